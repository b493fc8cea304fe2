-- Argo CD action "pause" for bellows.dev/SchemaRollout (gopher-lua, Lua 5.1):
-- sets spec.paused, so the controller starts nothing new and keeps its place.
-- argocd-cm.yaml embeds this file verbatim; tests/argocd.rs checks that.
obj.spec.paused = true
return obj
