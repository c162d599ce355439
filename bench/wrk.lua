-- wrk script: each thread cycles through its own share of the session cookies, so no two
-- requests use one session at once (a 409 would then be a real bug), and the run prints
-- one machine-readable RESULT line.
-- Usage: wrk -t N -s bench/wrk.lua URL -- COOKIE_FILE N
-- (wrk starts each thread as soon as it is set up, so the count must come as an argument.)
-- With a third argument `write` (and -c N, one connection a thread), every thread is one
-- writer of the first session: it requests /write?w=<thread> over and over.

local next_id = 0
local threads = {}

function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

function init(args)
    local threads = tonumber(args[2])
    cookies = {}
    local all = {}
    for line in io.lines(args[1]) do
        table.insert(all, line)
    end
    for i, c in ipairs(all) do
        if (i - 1) % threads == id or #all == 1 then
            table.insert(cookies, c)
        end
    end
    index = 0
    if args[3] == "write" then
        cookies = { all[1] }
        path = "/write?w=" .. id
        conflicts = 0
        -- Defined only here: wrk parses headers and bodies only for a script that has one.
        response = function(status)
            if status == 409 then
                conflicts = conflicts + 1
            end
        end
    end
end

function request()
    index = index % #cookies + 1
    return wrk.format(nil, path, { ["Cookie"] = cookies[index] })
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %.1f %.0f %.0f %d %d %d",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
    if threads[1]:get("conflicts") then
        local total = 0
        for _, thread in ipairs(threads) do
            total = total + thread:get("conflicts")
        end
        io.write(string.format(" %d", total))
    end
    io.write("\n")
end
