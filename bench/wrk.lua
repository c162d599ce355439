-- wrk script: each thread cycles through its own share of the session cookies, so no two
-- requests use one session at once (a 409 would then be a real bug), and the run prints
-- one machine-readable RESULT line.
-- Usage: wrk -t N -s bench/wrk.lua URL -- COOKIE_FILE N
-- (wrk starts each thread as soon as it is set up, so the count must come as an argument.)

local next_id = 0

function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
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
end

function request()
    index = index % #cookies + 1
    return wrk.format(nil, nil, { ["Cookie"] = cookies[index] })
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %.1f %.0f %.0f %d %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
end
