'use strict';
// The till page: a paired phone's camera, a code per scan, one big answer. Our own script,
// run under the page's Content-Security-Policy (its hash); it loads nothing else.
const SCAN_EVERY_MS = 300;  // a few frames a second, and only while no answer is showing
const MAX_SIDE = 1280;  // frames sent to the server are at most this wide or high
const HEADLINES = {
  invalid: 'Not a valid code',
  revoked_key: 'Not valid',
  voided: 'Voided by the issuer',
  already_redeemed: 'Already used',
  not_yet_valid: 'Not valid yet',
  expired: 'Expired',
  outside_hours: 'Not valid at this hour',
  not_accepted_here: 'Not accepted here',
  campaign_paused: 'Campaign paused',
  rate_limited: 'Too many invalid scans',
  unavailable: 'Cannot check now: do not accept',
  unauthorized: 'This phone is not a till',
};
const $ = (id) => document.getElementById(id);
const video = $('video');
const serverDecode = new URLSearchParams(location.search).get('decode') === 'server';
let token = null;
let refreshTimer = null;
let busy = false;
let showing = false;
let detector = null;
let audio = null;
let reverseTimer = null;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'till-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function network(text) {
  $('net').textContent = text;
}

// The device's credential is an HttpOnly cookie this script never sees: the exchange gives a
// short-lived access token, renewed by itself before it expires.
async function exchange() {
  const response = await fetch('/till/token', {method: 'POST', headers: {'X-Qrloop-Till': '1'}});
  if (response.status === 401) {
    token = null;
    unpaired();
    return false;
  }
  if (!response.ok) throw new Error('token exchange answered ' + response.status);
  const body = await response.json();
  token = body.access_token;
  $('who').textContent = body.terminal_name + ' · ' + body.store_name;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, Math.max(10, body.expires_in * 0.8) * 1000);
  return true;
}

async function refresh() {
  try {
    await exchange();
    network('');
  } catch (error) {
    network('Offline; retrying…');
    refreshTimer = setTimeout(refresh, 5000);
  }
}

function unpaired() {
  for (const id of ['scanner', 'start', 'typed']) $(id).hidden = true;
  $('unpaired').hidden = false;
}

// One scan: the same nonce on every retry, so a scan whose answer the network lost is answered
// again, never redeemed twice. A token refused meanwhile is exchanged again first.
async function send(path, body, type) {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(path, {
        method: 'POST',
        headers: {'Authorization': 'Bearer ' + token, 'Content-Type': type},
        body: body,
      });
      if (response.status === 401 && attempt < 2 && await exchange()) continue;
      network('');
      return response;
    } catch (error) {
      if (attempt >= 5) throw error;
      network('Network problem; retrying…');
      await sleep(Math.min(4000, 300 * 2 ** attempt));
    }
  }
}

async function redeemCode(code) {
  const response = await send('/v1/redeem', JSON.stringify({code: code, nonce: nonce()}),
    'application/json');
  await answer(response, false);
}

async function redeemFrame(blob) {
  const response = await send('/v1/redeem/frame?nonce=' + nonce(), blob, blob.type);
  await answer(response, true);
}

function money(minor, currency) {
  try {
    const format = new Intl.NumberFormat(undefined, {style: 'currency', currency: currency});
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(minor / 10 ** digits);
  } catch (error) {
    return minor + ' ' + currency;
  }
}

async function answer(response, fromFrame) {
  const body = await response.json().catch(() => ({}));
  if (response.ok && body.status === 'no_code') return;
  // A frame the server could not read is the camera's hiccup: the next frame will do.
  if (fromFrame && (response.status === 400 || response.status === 413)) return;
  if (response.status === 401) {
    unpaired();
    return;
  }
  if (response.ok && body.status === 'redeemed') accepted(body);
  else if (response.ok && body.status === 'reversed') {
    // A retried scan whose redemption was reversed meanwhile: the code was not taken again.
    show('no', 'Reversed', money(body.face_value, body.currency), 'Scan the code again.');
    beep(false);
  } else refused(body);
}

function show(kind, verdict, value, reason) {
  const box = $('answer');
  box.className = kind;
  $('verdict').textContent = verdict;
  $('value').textContent = value;
  $('reason').textContent = reason;
  box.hidden = false;
  showing = true;
  $('next').focus();
}

function accepted(body) {
  const issuer = body.issuer_name ? 'Issued by ' + body.issuer_name + '.' : '';
  show('ok', 'Accepted', money(body.face_value, body.currency), issuer);
  beep(true);
  const until = Date.now() + body.reversal_window_s * 1000;
  const button = $('reverse');
  button.hidden = body.reversal_window_s <= 0;
  button.disabled = false;
  button.onclick = () => reverse(body.redemption_id, body);
  clearTimeout(reverseTimer);
  reverseTimer = setTimeout(() => { button.hidden = true; }, Math.max(0, until - Date.now()));
}

function usedWhereAndWhen(body) {
  if (!body.redeemed_at) return body.detail || '';
  const where = body.store_name || ('store ' + body.store_id);
  const local = body.redeemed_at_local || body.redeemed_at;
  const old = Date.now() - Date.parse(local) > 20 * 3600 * 1000;
  return 'Used at ' + where + ' at ' + local.slice(11, 16) + (old ? ' on ' + local.slice(0, 10) : '') + '.';
}

function refused(body) {
  const reason = body.reason || 'unavailable';
  const words = reason === 'already_redeemed' ? usedWhereAndWhen(body)
    : (body.detail || 'The service did not answer.');
  $('reverse').hidden = true;
  show('no', HEADLINES[reason] || 'Refused', '', words);
  beep(false);
}

async function reverse(redemptionId, redeemed) {
  const button = $('reverse');
  button.disabled = true;
  try {
    const response = await send('/v1/redemptions/' + encodeURIComponent(redemptionId) +
      '/reverse', null, 'application/json');
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      button.hidden = true;
      show('undone', 'Reversed', money(redeemed.face_value, redeemed.currency),
        'The code can be used again.');
      return;
    }
    $('reason').textContent = body.detail || 'The reversal was refused.';
  } catch (error) {
    $('reason').textContent = 'The network failed; the reversal may not have happened.';
  }
  button.disabled = false;
}

// Sounds of our own: two rising notes for yes, one low buzz for no.
function beep(ok) {
  if (navigator.vibrate) navigator.vibrate(ok ? 80 : [200, 100, 200]);
  if (!audio) return;
  const notes = ok ? [[880, 0, 0.12], [1320, 0.13, 0.2]] : [[196, 0, 0.55]];
  for (const [frequency, at, length] of notes) {
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    const start = audio.currentTime + at;
    oscillator.type = ok ? 'sine' : 'square';
    oscillator.frequency.value = frequency;
    gain.gain.setValueAtTime(0.2, start);
    gain.gain.exponentialRampToValueAtTime(0.001, start + length);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start(start);
    oscillator.stop(start + length);
  }
}

function frameBlob() {
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const canvas = $('frame');
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.85));
}

async function scan() {
  if (busy || showing || !token || video.readyState < 2) return;
  busy = true;
  try {
    if (detector) {
      const found = await detector.detect(video);
      if (found.length) await redeemCode(found[0].rawValue);
    } else {
      const blob = await frameBlob();
      if (blob) await redeemFrame(blob);
    }
  } catch (error) {
    network('Network problem; scan again.');
  } finally {
    busy = false;
  }
}

async function chooseDecoder() {
  if (serverDecode || !('BarcodeDetector' in window)) return null;
  try {
    const formats = await BarcodeDetector.getSupportedFormats();
    return formats.includes('qr_code') ? new BarcodeDetector({formats: ['qr_code']}) : null;
  } catch (error) {
    return null;
  }
}

async function start() {
  $('start').hidden = true;
  try {
    audio = new AudioContext();  // made on the tap: browsers let sound start only then
  } catch (error) {
    audio = null;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $('hint').textContent = 'No camera here (it needs https): type the code below.';
    return;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({
      video: {facingMode: 'environment', width: {ideal: 1280}, height: {ideal: 720}},
      audio: false,
    });
    await video.play();
  } catch (error) {
    $('hint').textContent = 'The camera could not start: type the code below.';
    return;
  }
  detector = await chooseDecoder();
  $('hint').textContent = 'Hold the code in view' + (detector ? '.' : ' (checked by the server).');
  setInterval(scan, SCAN_EVERY_MS);
}

$('start').addEventListener('click', start);
$('next').addEventListener('click', () => {
  $('answer').hidden = true;
  showing = false;
});
$('typed').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('code');
  if (!input.value.trim() || showing) return;
  try {
    await redeemCode(input.value.trim());
    input.value = '';
  } catch (error) {
    network('Network problem; try again.');
  }
});

(async () => {
  try {
    if (!await exchange()) return;
  } catch (error) {
    network('Offline; retrying…');
    refreshTimer = setTimeout(refresh, 5000);
  }
  for (const id of ['scanner', 'start', 'typed']) $(id).hidden = false;
})();
