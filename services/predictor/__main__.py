"""`python -m services.predictor` (same as `mixpilot predictor`): run the predictor as its own process."""

from services.predictor.service import parts
from services.common.service_runner import service_main

if __name__ == "__main__":
    raise SystemExit(service_main(parts, "predictor"))
