# Shortcuts for the scripts; each script installs what it needs.
.PHONY: demo test bench build
demo:
	scripts/demo.sh
test:
	scripts/test.sh
bench:
	scripts/bench.sh
build:
	scripts/build-arm64.sh
