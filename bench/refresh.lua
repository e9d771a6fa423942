-- wrk script: POST /v1/auth/refresh, each request with the refresh token the previous response
-- handed out (tokens are single use). The first token is read from the file BENCH_REFRESH_FILE;
-- the last one is written back there when the run ends. run.sh signs in afresh before every
-- run all the same: a run that stops with a refresh in flight leaves a token the server already
-- took in the file, and presenting it again revokes the session.
-- One thread and one connection only: two requests in flight would reuse a token and revoke
-- the session (as they should).
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    local file = assert(io.open(os.getenv("BENCH_REFRESH_FILE"), "r"))
    token = file:read("*l")
    file:close()
end

function request()
    return wrk.format("POST", nil, { ["x-refresh-token"] = token }, "")
end

function response(status, headers, body)
    local next_token = body:match('"refreshToken":"([^"]+)"')
    if next_token then
        token = next_token
    end
end

function done(summary, latency, requests)
    local last = threads[1]:get("token")
    local file = assert(io.open(os.getenv("BENCH_REFRESH_FILE"), "w"))
    file:write(last, "\n")
    file:close()
end
