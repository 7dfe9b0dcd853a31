"""`python -m services.analyzer` (same as `mixpilot analyzer`): run the analyzer as its own process."""

from services.analyzer.service import parts
from services.common.service_runner import service_main

if __name__ == "__main__":
    raise SystemExit(service_main(parts, "analyzer"))
