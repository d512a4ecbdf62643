# Two entry points for a fresh machine (see README):
#   make demo  - set up, then split the bundled two-speaker sample into out/
#   make test  - set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test ffmpeg browser

$(BIN)/podsep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/pip install --quiet --no-cache-dir -e '.[test,ray]'
	touch $(BIN)/podsep

ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else echo "podsep needs FFmpeg: install it (apt-get install ffmpeg / brew install ffmpeg)"; exit 1; fi; }

# headless Chromium for the review-page test (tests/integration/test_editor_outputs.py)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the review-page test needs Chromium: install it (apt-get install chromium)"; exit 1; fi; }

setup: ffmpeg $(BIN)/podsep

demo: setup
	$(BIN)/podsep split samples/interview.wav -o out --num-speakers 2 --names Alice,Bob --overwrite

test: setup browser
	$(BIN)/python -m pytest -q
