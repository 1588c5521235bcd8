{{/* Names are cut at 63 characters: the limit of a DNS label and of a label value. */}}
{{- define "gitmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gitmirror.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Suffixed names leave room for the suffix, so two components never truncate to one name. */}}
{{- define "gitmirror.operator.fullname" -}}
{{- printf "%s-operator" (include "gitmirror.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "gitmirror.fleet.fullname" -}}
{{- printf "%s-cache" (include "gitmirror.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* Cluster-scoped, so the namespace keeps two releases of the same name apart. */}}
{{- define "gitmirror.operator.clusterRoleName" -}}
{{- printf "%s-%s" (include "gitmirror.operator.fullname" .) .Release.Namespace | trunc 253 -}}
{{- end -}}

{{- define "gitmirror.operator.serviceAccountName" -}}
{{- default (include "gitmirror.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "gitmirror.fleet.serviceAccountName" -}}
{{- default (include "gitmirror.fleet.fullname" .) .Values.fleet.serviceAccount.name -}}
{{- end -}}

{{- define "gitmirror.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Selector labels must never change between chart versions: Deployment selectors are immutable. */}}
{{- define "gitmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitmirror.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Call with (dict "root" $ "component" "operator"|"cache"|"") */}}
{{- define "gitmirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "gitmirror.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/version: {{ default .root.Chart.AppVersion .root.Values.image.tag | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Pod and container security contexts: Pod Security Standard "restricted" for every workload.
Not configurable beyond the numeric ids, so no values combination can render a weaker pod.
*/}}
{{- define "gitmirror.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
# Without it the kubelet re-chowns every file of a volume (all of a fleet's mirrors) on each mount.
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "gitmirror.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* s3://bucket/prefix[?forcePathStyle=true], the sidecar's GITMIRROR_SNAPSHOT_STORE. */}}
{{- define "gitmirror.snapshotStoreUrl" -}}
{{- $s := .Values.snapshotStore -}}
{{- $prefix := trimAll "/" $s.prefix -}}
{{- printf "s3://%s" $s.bucket -}}
{{- with $prefix }}/{{ . }}{{ end -}}
{{- if $s.forcePathStyle }}?forcePathStyle=true{{ end -}}
{{- end -}}

{{/*
Settings that cannot be expressed in values.schema.json because they relate two values or the
release; rendered by every template that depends on them, so `helm template` fails early.
*/}}
{{- define "gitmirror.validate" -}}
{{- $op := .Values.operator -}}
{{- if and (gt (int $op.replicas) 1) (not $op.leaderElection) -}}
{{- fail "operator.leaderElection=false needs operator.replicas=1: two replicas without a leader would both reconcile" -}}
{{- end -}}
{{- if and .Values.fleet.enabled $op.watchNamespaces (not (has .Release.Namespace $op.watchNamespaces)) -}}
{{- fail (printf "operator.watchNamespaces must include the release namespace %q while fleet.enabled=true: the operator creates the fleet's admin-token Secret and opens its readiness gates only in namespaces it watches" .Release.Namespace) -}}
{{- end -}}
{{- if and .Values.snapshotStore.credentials.existingSecret (not .Values.snapshotStore.bucket) -}}
{{- fail "snapshotStore.credentials.existingSecret is set but snapshotStore.bucket is empty" -}}
{{- end -}}
{{- if and (not .Values.operator.serviceAccount.create) (not .Values.operator.serviceAccount.name) -}}
{{- fail "operator.serviceAccount.name is required when operator.serviceAccount.create=false" -}}
{{- end -}}
{{- if and (not .Values.fleet.serviceAccount.create) (not .Values.fleet.serviceAccount.name) -}}
{{- fail "fleet.serviceAccount.name is required when fleet.serviceAccount.create=false" -}}
{{- end -}}
{{- end -}}

{{/*
fleet.dataVolume.size in bytes, for the shares the chart works out of it: the data budget and
the pack cache's. The sidecar's own defaults would read statfs, which behind an emptyDir sees
the node's disk, not the sizeLimit. Sizes are Kubernetes quantities (20Gi, 1.5Ti, 500G) or bytes.
*/}}
{{- define "gitmirror.dataVolumeBytes" -}}
{{- $size := .Values.fleet.dataVolume.size -}}
{{- if kindIs "string" $size -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $size -}}
{{- $unit := trimPrefix $number $size -}}
{{- $factor := dict "" 1 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 -}}
{{- if or (eq $number "") (not (hasKey $factor $unit)) -}}
{{- fail (printf "fleet.dataVolume.size %q: the data budget and the pack cache's share are worked out of sizes such as 20Gi, 500M or 21474836480; for this one set fleet.dataVolume.budget (e.g. 18GiB) and fleet.packCache.maxBytes" $size) -}}
{{- end -}}
{{- printf "%f" (mulf (float64 $number) (get $factor $unit)) -}}
{{- else -}}
{{- printf "%f" (float64 $size) -}}
{{- end -}}
{{- end -}}

{{/*
GITMIRROR_PACK_CACHE_MAX_BYTES: fleet.packCache.maxBytes as given, or a tenth of
fleet.dataVolume.size in whole bytes.
*/}}
{{- define "gitmirror.packCacheMaxBytes" -}}
{{- $set := toString .Values.fleet.packCache.maxBytes -}}
{{- if ne $set "" -}}
{{- $set -}}
{{- else -}}
{{- printf "%.0f" (floor (divf (float64 (include "gitmirror.dataVolumeBytes" .)) 10)) -}}
{{- end -}}
{{- end -}}

{{/*
GITMIRROR_DATA_BUDGET in bytes: fleet.dataVolume.budget when set, else the volume's size less
headroomPercent, for what the sidecar cannot account to the byte (directory blocks, git's lock
and temp files between two looks of its growth watch). The kubelet evicts a pod whose emptyDir
passes its size limit; the sidecar refuses a write before that.
*/}}
{{- define "gitmirror.fleet.dataBudget" -}}
{{- $volume := .Values.fleet.dataVolume -}}
{{- if $volume.budget -}}
{{- $volume.budget -}}
{{- else -}}
{{- $bytes := float64 (include "gitmirror.dataVolumeBytes" .) -}}
{{- printf "%d" (int64 (floor (divf (mulf $bytes (sub 100 (int $volume.headroomPercent))) 100))) -}}
{{- end -}}
{{- end }}
