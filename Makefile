# Shortcuts for the scripts; each script installs what it needs. deploy, logs and invoke need
# the AWS SAM CLI and credentials; they read samconfig.toml (stack name, saved parameters).
STACK ?= leadspace-enrich
# Tools the scripts installed into the project's environment (cargo-lambda for sam build).
export PATH := $(CURDIR)/.venv/bin:$(PATH)
BUCKET ?= $(shell aws cloudformation describe-stacks --stack-name $(STACK) --query "Stacks[0].Outputs[?OutputKey=='Bucket'].OutputValue" --output text 2>/dev/null)
FUNCTION = $(shell aws cloudformation describe-stacks --stack-name $(STACK) --query "Stacks[0].Outputs[?OutputKey=='FunctionName'].OutputValue" --output text)

.PHONY: demo test bench build deploy logs invoke fresh-check
demo:
	scripts/demo.sh
test:
	scripts/test.sh
bench:
	scripts/bench.sh
# The README's commands on a clean clone with only the system's PATH (docs/development.md).
fresh-check:
	scripts/check-fresh-machine.sh all
build:
	scripts/build-arm64.sh
# The first time, run `sam deploy --guided` instead: it asks for the parameters and saves them.
deploy: build
	sam build
	sam deploy --stack-name $(STACK)
logs:
	sam logs --stack-name $(STACK)
# The enrichments of the stack's bucket (make invoke BUCKET=other-bucket for another).
invoke:
	aws lambda invoke --function-name $(FUNCTION) --cli-binary-format raw-in-base64-out \
		--payload '{"action": "status", "bucket": "$(BUCKET)"}' /dev/stdout
