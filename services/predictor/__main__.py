"""Run the predictor as its own process (same as `mixpilot predictor`)."""

from services.common.service_runner import service_main
from services.predictor.service import parts

if __name__ == "__main__":
    raise SystemExit(service_main(parts, "predictor"))
