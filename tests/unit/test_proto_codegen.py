"""The generated protobuf code is reproducible from proto/ and not stale."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "services" / "common" / "generated"


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "proto_codegen.sh"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(GENERATED)
        for p in GENERATED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed, "run scripts/proto_codegen.sh: generated file set differs"
    stale = [
        str(rel) for rel in fresh if not filecmp.cmp(tmp_path / rel, GENERATED / rel, shallow=False)
    ]
    assert not stale, f"generated code is stale, run scripts/proto_codegen.sh: {stale}"


def test_contract_round_trip() -> None:
    from mixpilot.v1 import mixpilot_pb2 as pb

    job = pb.JobEnvelope(job_id="j1", tenant="t", attempt=2, stage=pb.STAGE_ANALYZED)
    job.input.uri = "file:///x.wav"
    job.analysis.key = "A minor"
    job.predictions.add(version="strategy").values["comp_ratio"] = 2.0
    again = pb.JobEnvelope.FromString(job.SerializeToString())
    assert again == job
    # Enums start at an _UNSPECIFIED zero value (Buf's rule), so a missing field is detectable.
    assert pb.JobEnvelope().stage == pb.STAGE_UNSPECIFIED == 0
    assert pb.JobEvent().state == pb.JOB_STATE_UNSPECIFIED == 0
