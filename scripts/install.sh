#!/usr/bin/env bash
# Installs what ishowtts needs into ./.venv (and the Debian packages it needs, where it can).
#   scripts/install.sh            the bot (PortAudio, torch for this GPU's driver, f5-tts, ...)
#   scripts/install.sh --test     plus the test tools and a PulseAudio server for the audio tests
# Re-running is cheap: the Python step is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=run
[[ "${1:-}" == "--test" ]] && profile=test
# The oldest Python the project declares (pyproject.toml requires-python), so that CI, which runs
# this script, tests on the lowest supported version; python3 when that one is not installed.
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  command -v python3.11 >/dev/null 2>&1 && PYTHON=python3.11
fi

need_debs=(libportaudio2)
[[ $profile == test ]] && need_debs+=(pulseaudio pulseaudio-utils libasound2-plugins)
# Browser tests of the overlay and panel: Debian's Chromium and its driver (no browser download).
[[ $profile == test ]] && need_debs+=(chromium chromium-driver)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${need_debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "==> installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# sha256sum on Linux, shasum on macOS (which has no sha256sum).
stamp=".venv/.ishowtts-$profile-$( (sha256sum pyproject.toml 2>/dev/null || shasum -a 256 pyproject.toml) | cut -c1-16)"
if [[ ! -e $stamp ]]; then
  echo "==> installing Python packages ($profile); the first time this downloads several GB"
  .venv/bin/python -m pip install -q --upgrade pip
  if [[ $profile == test ]]; then
    # Tests run on the CPU: take the CPU build of torch where it is available (measured recipe,
    # ../shared/notes/install.md); elsewhere pip falls back to the default build.
    .venv/bin/python -m pip install -q torch==2.13.0 torchaudio==2.11.0 torchcodec==0.13.0 \
      || .venv/bin/python -m pip install -q torch torchaudio
    .venv/bin/python -m pip install -q -e '.[test]'
  else
    # torch built for this machine's NVIDIA driver, else the CPU build with the eSpeak NG banner
    # (the decision and its reasons: bot/setup/installer.py; scripts/install.ps1 does the same).
    .venv/bin/python -m bot.setup.installer torch --python .venv/bin/python
    .venv/bin/python -m pip install -q -e .
  fi
  # torchaudio's optional C++ extension is built for CUDA torch; next to a CPU torch it fails to
  # load. f5-tts only needs torchaudio's pure-Python parts, so drop the extension in that case.
  if ! .venv/bin/python -c "import torchaudio" >/dev/null 2>&1; then
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    rm -f "$site"/torchaudio/lib/*.so
    .venv/bin/python -c "import torchaudio"
  fi
  rm -f .venv/.ishowtts-"$profile"-*
  touch "$stamp"
fi
