"""Run the renderer as its own process (same as `mixpilot renderer`)."""

from services.common.service_runner import service_main
from services.renderer.service import parts

if __name__ == "__main__":
    raise SystemExit(service_main(parts, "renderer"))
