# Sourced by the benchmark scripts: makes sure the test OpenID provider is installed and
# current — its packages match the lock file (the stamp setup.sh writes) and its script
# matches the repository's — running s3-compat-tests/clients/setup.sh (idempotent) if not.
idp="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}/idp"
want="$(sha256sum s3-compat-tests/idp/package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$idp/.drive-package-lock.sha256" 2>/dev/null || true)" != "$want" ] ||
    ! cmp -s s3-compat-tests/idp/test-idp.mjs "$idp/test-idp.mjs"; then
    bash s3-compat-tests/clients/setup.sh >/dev/null
fi
