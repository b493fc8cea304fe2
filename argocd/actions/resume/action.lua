-- Argo CD action "resume" for bellows.dev/SchemaRollout (gopher-lua, Lua 5.1):
-- clears spec.paused, so the rollout continues from where it stopped.
-- argocd-cm.yaml embeds this file verbatim; tests/argocd.rs checks that.
obj.spec.paused = false
return obj
