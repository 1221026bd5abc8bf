-- wrk script: POST a ~600-byte Group.CallbackSendMsgException over keep-alive connections.
-- Each request carries a distinct Random (thread id * 1e9 + counter), so every event is new.
-- Optional argument: delay in ms between requests per connection (for a fixed, lower load).

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local counter = 0
local pause = 0
local path = "/callback?SdkAppid=1400000001&CallbackCommand=Group.CallbackSendMsgException"
  .. "&contenttype=json&ClientIP=10.0.0.7&OptPlatform=iOS"
local headers = { ["Content-Type"] = "application/json" }
local template = '{"CallbackCommand":"Group.CallbackSendMsgException","GroupId":"@TGS#bench%d",'
  .. '"Type":"Public","From_Account":"user%d","Operator_Account":"admin","Random":%d,'
  .. '"OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}},'
  .. '{"MsgType":"TIMFaceElem","MsgContent":{"Index":1,"Data":"content"}}],'
  .. '"CloudCustomData":"your cloud custom data, padded to a realistic size for the benchmark",'
  .. '"ErrorCode":10023,"ErrorInfo":"msg count exceeds limit,please retry later",'
  .. '"EventTime":"%d","Extra":"unknown fields are kept, not rejected by the ingress"}'

function init(args)
  pause = tonumber(args[1] or "0") or 0
end

function request()
  counter = counter + 1
  local random = tid * 1000000000 + counter
  local body = string.format(template, counter % 50, counter % 500, random, os.time() * 1000)
  return wrk.format("POST", path, headers, body)
end

function delay()
  return pause
end
