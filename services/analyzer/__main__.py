"""Run the analyzer as its own process (same as `mixpilot analyzer`)."""

from services.analyzer.service import parts
from services.common.service_runner import service_main

if __name__ == "__main__":
    raise SystemExit(service_main(parts, "analyzer"))
