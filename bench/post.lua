-- wrk script: POST /api/v1/partnerships with a create body that passes the gateway's
-- validation. The token comes from BENCH_TOKEN (sent to nginx too, which replaces it).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token and #token > 0 then
  wrk.headers["Authorization"] = "Bearer " .. token
end
