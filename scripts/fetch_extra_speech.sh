#!/usr/bin/env bash
# More *training* speech for the embedded separator, from Debian packages (bookworm main):
# game dialogue (Flight of the Amazon Queen, Beneath a Steel Sky, Drascula; freeware, redistribution
# allowed), Fish Fillets' Czech / Dutch / English dubs (GPL-2), Tux Paint's spoken stamp names
# (GPL-2, about one volunteer per language), Asterisk's phone prompts in four voices (CC-BY-SA-3.0 /
# CC-BY-3.0; the Spanish set is left out: read by the English set's speaker) and festvox-ru's
# recorded sentences (one voice). About 17 hours, tens of voices: see
# docs/training/separator-history.md, *Sessions 36-37* (trained on beside a control
# from the same weights, it cost 0.18 dB on unseen voices: kept as a tool, not in the recipe). None of it is evaluation material; klettres-data
# (the full-band development set) and ktuberling-data (session 13) are not fetched here.
#
# Writes 8 kHz mono 16-bit WAV under $OUT/<source>/<voice>/<id>.wav. The two big game folders
# (fotaq, bass) are one folder each: nothing in their files says who speaks.
# Needs: apt-get (after apt-get update), dpkg-deb, ffmpeg, a python with numpy and soundfile, and
# `pip install propack` in it (PyPI; Beneath a Steel Sky's speech is RNC ProPack-compressed).
# About 0.7 GB of downloads and 20 minutes on two cores; $OUT is about 1 GB (25170 files). Session 36
# ran it twice (the helper's run and a check): the same files, byte for byte.
#
#   python3 -m venv runs/xs-venv && runs/xs-venv/bin/pip install numpy soundfile propack
#   WORK=runs/extra-speech-work OUT=runs/extra-speech PY=runs/xs-venv/bin/python bash scripts/fetch_extra_speech.sh
set -euo pipefail
WORK=$(realpath -m "${WORK:-runs/extra-speech-work}")  # absolute: the script changes directory
OUT=$(realpath -m "${OUT:-runs/extra-speech}")
PY=${PY:-python3}
[[ "$PY" == */* ]] && PY=$(realpath -m -s "$PY")  # -s: a venv's python is a symlink to keep
mkdir -p "$WORK/debs" "$WORK/ex" "$OUT"
PKGS="fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl tuxpaint-stamps-default \
asterisk-core-sounds-en-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav \
festvox-ru flight-of-the-amazon-queen beneath-a-steel-sky drascula"
cd "$WORK/debs"
apt-get download $PKGS
for p in $PKGS; do
  [ -d "$WORK/ex/$p" ] || { mkdir -p "$WORK/ex/$p"; dpkg-deb -x ${p}_*.deb "$WORK/ex/$p"; }
done
EX="$WORK/ex" OUT="$OUT" "$PY" - <<'EOF'
import os, re, glob, io, struct, subprocess, numpy as np, soundfile as sf
from concurrent.futures import ThreadPoolExecutor
EX, OUT = os.environ['EX'], os.environ['OUT']
def ff(src_bytes_or_path, dst, fmt=None):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    cmd = ['ffmpeg', '-v', 'error', '-y'] + (['-f', fmt] if fmt else []) + ['-i', 'pipe:0' if isinstance(src_bytes_or_path, bytes) else src_bytes_or_path, '-ac', '1', '-ar', '8000', '-sample_fmt', 's16', dst]
    subprocess.run(cmd, input=src_bytes_or_path if isinstance(src_bytes_or_path, bytes) else None, check=True)
def pcm_u8(raw, dst, sr=11025):  # unsigned 8-bit PCM -> 8 kHz wav via ffmpeg
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run(['ffmpeg', '-v', 'error', '-y', '-f', 'u8', '-ar', str(sr), '-ac', '1', '-i', 'pipe:0', '-ar', '8000', '-sample_fmt', 's16', dst], input=raw, check=True)
jobs = []
# 1) Fish Fillets NG: speaker label = dialog font (character); nl has only 2 characters.
ids = {}
for f in glob.glob(f'{EX}/fillets-ng-data/usr/share/games/fillets-ng/script/*/dialogs*.lua'):
    for m in re.finditer(r'dialogId\("([^"]+)",\s*"([^"]+)"', open(f, encoding='utf-8', errors='replace').read()):
        ids[m.group(1)] = m.group(2)
for lang, pkg in [('cs', 'fillets-ng-data-cs'), ('nl', 'fillets-ng-data-nl'), ('en', 'fillets-ng-data')]:
    for f in glob.glob(f'{EX}/{pkg}/usr/share/games/fillets-ng/sound/**/{lang}/*.ogg', recursive=True):
        b = os.path.basename(f)[:-4]; lvl = '_'.join(f.split('/sound/')[1].split('/')[:-2])
        jobs.append((f, f'{OUT}/fillets_{lang}/{ids.get(b, "unknown")}/{lvl}_{b}.wav'))
# 2) Tux Paint spoken stamp descriptions: speaker label = language (about 1 voice per language).
for f in glob.glob(f'{EX}/tuxpaint-stamps-default/usr/share/tuxpaint/stamps/**/*_desc*.ogg', recursive=True):
    m = re.search(r'_desc(?:_([A-Za-z_]+))?\.ogg', f); lang = (m.group(1) if m else None) or 'en'
    jobs.append((f, f'{OUT}/tuxpaint/{lang}/' + os.path.relpath(f, f'{EX}/tuxpaint-stamps-default/usr/share/tuxpaint/stamps').replace('/', '__')[:-4] + '.wav'))
# 3) Asterisk core prompts (already 8 kHz): one voice per directory name.
for f in glob.glob(f'{EX}/asterisk-core-sounds-*-wav/usr/share/asterisk/sounds/*/**/*.wav', recursive=True):
    if '/silence/' in f: continue
    spk = f.split('/sounds/')[1].split('/')[0]
    jobs.append((f, f'{OUT}/asterisk/{spk}/' + f.split(spk + '/')[1].replace('/', '__')))
# 4) festvox-ru clunits recordings (natural read sentences, 1 speaker).
for f in glob.glob(f'{EX}/festvox-ru/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav/*.wav'):
    jobs.append((f, f'{OUT}/festvox_ru/nsh/' + os.path.basename(f)))
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda j: ff(*j), jobs))
# 5) Flight of the Amazon Queen talkie: queen.1c table, .SB entries are MP3 (11025 Hz, 16 kbit/s).
f = open(f'{EX}/flight-of-the-amazon-queen/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c', 'rb').read()
assert f[:4] == b'QTBL' and f[12] == 1  # compression 1 = MP3
n = struct.unpack('>H', f[13:15])[0]; p = 15; sb = []
for i in range(n):
    name = f[p:p+12].split(b'\0')[0].decode(); off, size = struct.unpack('>II', f[p+13:p+21]); p += 21
    if name.endswith('.SB'): sb.append((name, off, size))
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda e: ff(f[e[1]:e[1]+e[2]], f'{OUT}/fotaq/all/{e[0][:-3]}.wav', fmt='mp3'), sb))
# 6) Beneath a Steel Sky CD: sky.dnr/sky.dsk, speech = file numbers 50000-59999, 22-byte header,
#    RNC ProPack (method 1) compressed when header flag bit 7 is set, then unsigned 8-bit 11025 Hz.
from propack.unpack import unpack
d = f'{EX}/beneath-a-steel-sky/usr/share/scummvm/beneath-a-steel-sky/'
dnr = open(d + 'sky.dnr', 'rb').read(); dsk = open(d + 'sky.dsk', 'rb').read()
for i in range(struct.unpack('<I', dnr[:4])[0]):
    e = dnr[4+8*i:12+8*i]; nr = struct.unpack('<H', e[:2])[0]
    if not 50000 <= nr < 60000: continue
    off = e[2] | e[3] << 8 | e[4] << 16; fl = e[5] | e[6] << 8 | e[7] << 16
    size = fl & 0x3fffff; off = ((off & 0x7fffff) << 4) if (off >> 23) & 1 else off
    b = dsk[off:off+size]; flag = struct.unpack('<H', b[:2])[0]
    body = bytes(unpack(b[22:])) if (flag >> 7) & 1 else b[22:]
    pcm_u8(body, f'{OUT}/bass/all/{nr}.wav')
# 7) Drascula (English): *.ALS = unsigned 8-bit 11025 Hz with 32-byte pad at both ends;
#    name prefix letters = character (digits only = player character).
for f2 in glob.glob(f'{EX}/drascula/usr/share/scummvm/drascula/en/*.ALS'):
    b = os.path.basename(f2)[:-4]; ch = re.sub(r'\d', '', b) or 'player'
    pcm_u8(open(f2, 'rb').read()[32:-32], f'{OUT}/drascula/{ch}/{b}.wav')
print('done')
EOF
