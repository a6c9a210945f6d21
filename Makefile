# Thin wrapper over CMake. Two commands do everything on a fresh Debian 12:
#   make demo    install what is missing, build, run the example model repo
#   make check   install what is missing, build (-Werror), run every test,
#                then build and run the suite again under ASan+UBSan
BUILD ?= build
SAN_BUILD ?= build-san
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps configure build demo check check-fast check-san bench install clean

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	@cmake -S . -B $(BUILD) -DFARM_WERROR=ON >/dev/null

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	@env -u MAKEFLAGS -u MFLAGS cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

demo: build
	@sh examples/demo.sh $(BUILD)

check: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)
	@$(MAKE) --no-print-directory check-san

check-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow $(CTEST_ARGS)

check-san: deps
	@test -f $(SAN_BUILD)/CMakeCache.txt || cmake -S . -B $(SAN_BUILD) -DFARM_WERROR=ON \
		-DFARM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@env -u MAKEFLAGS -u MFLAGS cmake --build $(SAN_BUILD) -j $(JOBS) -- --no-print-directory
	@cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -LE nosan $(CTEST_ARGS)

bench: build
	@sh scripts/deps.sh --bench
	@for b in bench/*.sh; do sh $$b $(BUILD) || exit 1; done

install: build
	@cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

clean:
	@rm -rf $(BUILD) $(SAN_BUILD)
