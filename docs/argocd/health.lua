-- Argo CD health of klambda's objects: Function, Version, Alias, EventSourceMapping and
-- LayerVersion (group lambda.klambda.dev). One script for the five kinds: it reads the
-- conditions every klambda controller writes, with the rules kstatus (Flux, kubectl wait)
-- applies to them, so that Argo CD and Flux agree.
--   Ready True                       -> Healthy (a disabled EventSourceMapping too)
--   Stalled True                     -> Degraded (the reason is Lambda's reason code)
--   Reconciling True, Ready False,
--   or a generation not yet observed -> Progressing
local hs = {}

local function condition(typ)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == typ then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  local blocked = condition("DeletionBlocked")
  if blocked ~= nil and blocked.status == "True" then
    hs.message = "Being deleted; " .. describe(blocked)
  end
  return hs
end

local generation = obj.metadata.generation
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = describe(ready)
end
return hs
