# knobnet: `make run` opens the pedalboard, `make test` runs the tests. Both set up what they need
# on a fresh Debian machine first: system libraries (audio, JACK, Qt under Xvfb/offscreen) and a
# virtual environment in .venv with knobnet installed in editable mode.

PYTHON ?= python3
VENV := .venv
APT_PACKAGES := libportaudio2 libsndfile1 jackd2 xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 \
	libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libxkbcommon0 \
	libegl1 libgl1 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core

.PHONY: run test bench setup system

run: setup
	$(VENV)/bin/knobnet

test: setup
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/knobnet bench

setup: system $(VENV)/.installed

# Installs only the packages that are missing; needs root (or sudo) the first time.
system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@
