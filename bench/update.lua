-- wrk script: PUT new values into the seeded credential per request (a new secret each time, so
-- every request seals a value, keeps the superseded version in history and writes a new one).
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
    n = n + 1
    local body = string.format(
        '{"fields":[{"fieldId":"accessKeyId","value":"AKIAIOSFODNN7EXAMPLE"},{"fieldId":"secretAccessKey","value":"bench-secret-%d-%d"}]}',
        n, math.random(1000000000))
    return wrk.format(nil, nil, nil, body)
end
