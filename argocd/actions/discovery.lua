-- Argo CD resource actions offered for bellows.dev/SchemaRollout
-- (gopher-lua, Lua 5.1). argocd-cm.yaml embeds this file verbatim;
-- tests/argocd.rs checks that.
local actions = {}
local generation = obj.metadata.generation or 0
local status = obj.status or {}
local phase = status.phase
local paused = (obj.spec or {}).paused == true
local finished = phase == "Succeeded" or phase == "Failed"

-- Approval is for the contract the controller has observed waiting for it,
-- and only once: the annotation's value must equal status.approvalKey.
local current = status.observedGeneration ~= nil and status.observedGeneration >= generation
local approved = obj.metadata.annotations ~= nil
  and obj.metadata.annotations["bellows.dev/approve"] == status.approvalKey

actions["approve"] = {
  iconClass = "fa fa-fw fa-check",
  disabled = not (phase == "AwaitingApproval" and current and status.approvalKey ~= nil and not approved),
}
actions["pause"] = {
  iconClass = "fa fa-fw fa-pause",
  disabled = paused or finished,
}
actions["resume"] = {
  iconClass = "fa fa-fw fa-play",
  disabled = not paused,
}
return actions
