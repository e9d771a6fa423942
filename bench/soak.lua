-- wrk script for bench/soak.sh: a mix of reads and writes over seeded credentials.
--   35 % reveal, 25 % get credential, 15 % list types, 10 % list the company's credentials,
--   7 % rename a seeded credential, and creates and deletes in another company (a create, then
--   the next write deletes it), so the data the reads touch keeps its size.
-- Environment: SOAK_CIDS (seeded credential ids, comma-separated), SOAK_COMPANY (their
-- company), SOAK_CREATE_BODY (a create body for the scratch company), SOAK_TOKEN.
local cids = {}
local company, create_body, token
local created = {}
local counter = 0

function init(args)
    for id in string.gmatch(os.getenv("SOAK_CIDS"), "[^,]+") do
        table.insert(cids, id)
    end
    company = os.getenv("SOAK_COMPANY")
    create_body = os.getenv("SOAK_CREATE_BODY")
    token = os.getenv("SOAK_TOKEN")
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

local function headers(json)
    local h = { ["Authorization"] = "Bearer " .. token }
    if json then h["Content-Type"] = "application/json" end
    return h
end

function request()
    local r = math.random(1000)
    local cid = cids[math.random(#cids)]
    if r <= 350 then
        return wrk.format("GET", "/v1/credential/credentials/" .. cid .. "/secure-values", headers())
    elseif r <= 600 then
        return wrk.format("GET", "/v1/credential/credentials/" .. cid, headers())
    elseif r <= 750 then
        return wrk.format("GET", "/v1/credential-type/credential-types", headers())
    elseif r <= 850 then
        return wrk.format("GET", "/v1/credential/credentials/company/" .. company, headers())
    elseif r <= 920 then
        counter = counter + 1
        return wrk.format("PATCH", "/v1/credential/credentials/" .. cid, headers(true),
            '{"name":"Soak credential ' .. counter .. '"}')
    elseif #created > 0 then
        return wrk.format("DELETE", "/v1/credential/credentials/" .. table.remove(created), headers())
    else
        return wrk.format("POST", "/v1/credential/credentials", headers(true), create_body)
    end
end

function response(status, headers, body)
    if status == 201 then
        local id = string.match(body, '"data":{"id":"([^"]+)"')
        if id then table.insert(created, id) end
    end
end
