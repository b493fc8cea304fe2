-- Argo CD action "approve" for bellows.dev/SchemaRollout (gopher-lua, Lua 5.1):
-- approves the Manual contract the controller waits for by setting the
-- annotation bellows.dev/approve to status.approvalKey (this object's uid and
-- its contract's spec digest). argocd-cm.yaml embeds this file verbatim;
-- tests/argocd.rs checks that.
if obj.status == nil or obj.status.approvalKey == nil then
  error("status.approvalKey is not set: the controller does not wait for an approval of this contract")
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["bellows.dev/approve"] = obj.status.approvalKey
return obj
