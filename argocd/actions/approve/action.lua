-- Argo CD action "approve" for bellows.dev/SchemaRollout (gopher-lua, Lua 5.1):
-- approves the Manual contract of the current generation by setting the
-- annotation bellows.dev/approve to metadata.generation. argocd-cm.yaml
-- embeds this file verbatim; tests/argocd.rs checks that.
if obj.metadata.generation == nil then
  error("metadata.generation is not set; nothing to approve")
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["bellows.dev/approve"] = tostring(obj.metadata.generation)
return obj
