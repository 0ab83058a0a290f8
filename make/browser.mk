# A real headless browser for the inference page's test (tests/integration/test_inference_page_browser.py).
# Included by the top-level Makefile. Debian's chromium, driven by the Python playwright package (dev extra):
# playwright's own `playwright install` downloads browsers from a CDN, which these machines cannot reach.
#   make browser -> /usr/bin/chromium (apt, as root; does nothing when it is already there)

CHROMIUM ?= /usr/bin/chromium
# sudo only when not root, so the step also runs in containers without sudo.
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo )apt-get

SETUP_STEPS += browser

.PHONY: browser

browser: $(CHROMIUM)

$(CHROMIUM):
	$(APT_GET) update -qq
	DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends chromium
