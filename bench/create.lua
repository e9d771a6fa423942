-- wrk script: POST a new credential per request; the JSON body comes from BENCH_CREATE_BODY.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_CREATE_BODY")
wrk.headers["Content-Type"] = "application/json"
