-- wrk script for benchmarks/redeem.py: every request carries the next unused code.
--
--   wrk -t2 -c64 -d10s --latency -s redeem.lua URL -- CODES TOKENS TAG THREADS [RATE]
--
-- CODES: one code per line; thread i of THREADS takes lines i, i+THREADS, ... so no two
--        requests of a run share a code. Should a thread run out, it starts over and
--        counts the reuse in `wrapped` (the script that sized the file treats it as an error).
-- TOKENS: terminal access tokens, one per line, used in turn.
-- TAG:   unique per run; nonces are TAG-thread-n, so none repeats across runs.
-- RATE:  optional, requests/s in all: each thread spaces its requests evenly (no catching up
--        after a stall), so the load is steady instead of as fast as the server answers.
-- done() prints one line "BENCH_JSON {...}" with counts and latency percentiles in µs.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[4])
  codes = {}
  local line_no = 0
  for line in io.lines(args[1]) do
    if line_no % nthreads == id and #line > 0 then
      codes[#codes + 1] = line
    end
    line_no = line_no + 1
  end
  headers = {}
  for token in io.lines(args[2]) do
    if #token > 0 then
      headers[#headers + 1] = {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }
    end
  end
  prefix = args[3] .. "-" .. id .. "-"
  sent = 0
  wrapped = 0
  local rate = tonumber(args[5] or "0")
  if rate > 0 then
    pace(1000 * nthreads / rate)
  end
end

-- Defines wrk's delay() hook: the next request of this thread is due `interval` ms after
-- the previous one's slot, or now if that slot has passed.
function pace(interval)
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *tp);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local slot = now_ms()
  function delay()
    local now = now_ms()
    slot = math.max(slot + interval, now)
    return slot - now
  end
end

function request()
  sent = sent + 1
  local i = sent
  if i > #codes then
    wrapped = wrapped + 1
    i = (i - 1) % #codes + 1
  end
  local body = '{"code":"' .. codes[i] .. '","nonce":"' .. prefix .. sent .. '"}'
  return wrk.format("POST", nil, headers[sent % #headers + 1], body)
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d,'
      .. ' "write_errors": %d, "non_2xx": %d, "timeouts": %d, "p50_us": %.0f,'
      .. ' "p90_us": %.0f, "p99_us": %.0f, "mean_us": %.1f, "max_us": %.0f, "wrapped": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max, wraps
  ))
end
