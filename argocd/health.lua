-- Argo CD health check for bellows.dev/SchemaRollout (gopher-lua, Lua 5.1).
-- argocd-cm.yaml embeds this file verbatim; tests/argocd.rs checks that.
local hs = {}

-- The condition of the given type in status.conditions, or nil.
local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- a unless it is nil or empty, else b.
local function either(a, b)
  if a == nil or a == "" then
    return b
  end
  return a
end

local generation = obj.metadata.generation or 0
local status = obj.status
if status == nil or status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local name = obj.metadata.name
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")
local approval = nil
if obj.metadata.annotations ~= nil then
  approval = obj.metadata.annotations["bellows.dev/approve"]
end
local progressing = {
  Pending = true,
  Expanding = true,
  Transitioning = true,
  Baking = true,
  Contracting = true,
}

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = either(stalled.message, either(status.message, "stalled: " .. tostring(stalled.reason)))
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = either(status.message, "a phase failed")
elseif phase == "Succeeded" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = either(status.message, "every phase succeeded")
  else
    hs.status = "Progressing"
    hs.message = "phase Succeeded; waiting for the Ready condition"
  end
elseif (obj.spec or {}).paused == true then
  hs.status = "Suspended"
  hs.message = either(status.message, "paused") .. "; resume with the resume action or kubectl bellows resume " .. name
elseif status.holdReason == "ObjectiveViolated" then
  -- The new version misses its service level objective: contract waits,
  -- and a human decides between rolling back and fixing forward.
  hs.status = "Degraded"
  hs.message = "service level objective violated; contract held: " .. either(status.message, "see status.objectives")
elseif phase == "AwaitingApproval" then
  if approval ~= nil and approval == status.approvalKey then
    hs.status = "Progressing"
    if status.holdReason == "AwaitingApproval" then
      hs.message = "approved contract " .. approval .. "; waiting for the controller to start contract"
    else
      hs.message = either(status.message, "approved contract " .. approval)
    end
  else
    hs.status = "Suspended"
    hs.message = either(status.message, "waiting for approval") .. "; approve with the approve action or kubectl bellows approve " .. name
  end
elseif phase == "AwaitingRollout" then
  -- Expand is done and the schema serves old and new code: Healthy, so
  -- that an Argo CD sync moves on to the wave that rolls the workloads out
  -- (Progressing would hold that wave back for good).
  hs.status = "Healthy"
  hs.message = either(status.message, "expanded; waiting for the workloads to roll out")
elseif phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to set a phase"
elseif progressing[phase] then
  hs.status = "Progressing"
  hs.message = either(status.message, phase)
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end
return hs
