// The REST API as the page uses it: the same /v1 routes integrators use, with the API key (if
// the server needs one) from localStorage. Errors are thrown as ApiError with the API's code.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const KEY = "mixpilot.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // not JSON: fall through
  }
  const error = body && body.error ? body.error : { code: "http_" + response.status, message: response.statusText };
  return new ApiError(response.status, error.code, error.message);
}

export async function request(method, path, { json, signal } = {}) {
  const init = { method, headers: headers(json ? { "Content-Type": "application/json" } : {}), signal };
  if (json !== undefined) init.body = JSON.stringify(json);
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJson(path) {
  return (await request("GET", path)).json();
}

export async function postJson(path, body, options = {}) {
  return request("POST", path, { json: body, ...options });
}

// Upload one file as a job; onProgress(fraction) while it is sent. Resolves with the job.
export function uploadSong(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/jobs");
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const error = body && body.error ? body.error : { code: "http_" + xhr.status, message: xhr.statusText };
        reject(new ApiError(xhr.status, error.code, error.message));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload could not reach the server"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// Follow a job's server-sent events (read with fetch, so the key can be sent) until it is done
// or failed; onUpdate(job) for each. Resolves with the final job.
export async function followJob(jobId, onUpdate) {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const response = await request("GET", `/v1/jobs/${jobId}/events`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const job = JSON.parse(data);
          onUpdate(job);
          if (job.done || job.state === "deleted") return job;
        }
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
    }
    await new Promise((r) => setTimeout(r, 1000)); // the stream broke: follow it again
  }
  throw new ApiError(0, "network", "lost the job's progress stream");
}

// Fetch a file (with the key) and hand it to the browser as a download.
export async function download(path, filename) {
  const response = await request("GET", path);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
