# Release archives. Included by the main Makefile; paths are relative to the
# repository root.
#
#   make dist   dist/release/berth_<version>_<os>_<arch>.tar.gz for
#               linux/darwin x amd64/arm64 (berth, docker-credential-berth,
#               README.md up to its first section, LICENSE if present) and
#               dist/release/SHA256SUMS (`sha256sum -c --ignore-missing`).
#
# Reproducible: the same commit gives the same bytes on any machine.
# -trimpath and the -X version are the only build inputs besides the source;
# tar sorts entries, names owner 0 and gives every file the commit's time
# (SOURCE_DATE_EPOCH), gzip -n leaves out a name and a timestamp.

DIST_DIR       := dist/release
DIST_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DIST_TAR := tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
	--format=gnu --mode=u+rwX,go+rX,go-w

.PHONY: dist

dist:
	@rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	@set -e; for p in $(DIST_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; name=berth_$(VERSION)_$${os}_$${arch}; stage=$(DIST_DIR)/$$name; \
		mkdir -p $$stage; \
		echo "dist: $$name"; \
		GOOS=$$os GOARCH=$$arch $(GOBUILD) -ldflags '$(LDFLAGS)' -o $$stage/berth ./cmd/berth; \
		GOOS=$$os GOARCH=$$arch $(GOBUILD) -o $$stage/docker-credential-berth ./cmd/docker-credential-berth; \
		sed '/^## /,$$d' README.md > $$stage/README.md; \
		if [ -f LICENSE ]; then cp LICENSE $$stage/LICENSE; fi; \
		$(DIST_TAR) -C $(DIST_DIR) -cf - $$name | gzip -n -9 > $(DIST_DIR)/$$name.tar.gz; \
		rm -rf $$stage; \
	done
	cd $(DIST_DIR) && sha256sum *.tar.gz > SHA256SUMS
	@cat $(DIST_DIR)/SHA256SUMS
