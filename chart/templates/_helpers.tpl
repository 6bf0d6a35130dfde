{{- /* Names, labels, URLs and checks shared by the templates. */ -}}

{{- define "platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* `<release>-<chart>`, short enough to take a `-appstore-config` suffix within 63 characters. */ -}}
{{- define "platform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "platform.drive.fullname" -}}
{{- printf "%s-drive" (include "platform.fullname" .) }}
{{- end }}

{{- define "platform.appstore.fullname" -}}
{{- printf "%s-appstore" (include "platform.fullname" .) }}
{{- end }}

{{- define "platform.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "platform.name" . }}
{{- end }}

{{- /* Selector labels of one component: call with (dict "root" $ "component" "drive"). */ -}}
{{- define "platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "platform.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "platform.componentLabels" -}}
{{ include "platform.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "platform.appstoreUrl" -}}
{{- printf "%s://%s" .Values.scheme .Values.hosts.appstore }}
{{- end }}

{{- define "platform.driveUrl" -}}
{{- printf "%s://%s" .Values.scheme .Values.hosts.drive }}
{{- end }}

{{- /* Where instance pods reach the App Store: its Service, by namespace-qualified name. */ -}}
{{- define "platform.appstoreInternalUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "platform.appstore.fullname" .) .Release.Namespace (int .Values.appstore.service.port) }}
{{- end }}

{{- define "platform.driveInternalUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "platform.drive.fullname" .) .Release.Namespace (int .Values.drive.service.port) }}
{{- end }}

{{- define "platform.instancesNamespace" -}}
{{- .Values.appstore.scheduler.namespace | default .Release.Namespace }}
{{- end }}

{{- /* The instances' ServiceAccount; empty when they run without one. */ -}}
{{- define "platform.appServiceAccountName" -}}
{{- $sa := .Values.appstore.scheduler.appServiceAccount }}
{{- if $sa.name }}
{{- $sa.name }}
{{- else if $sa.create }}
{{- printf "%s-app" (include "platform.fullname" .) }}
{{- end }}
{{- end }}

{{- define "platform.driveSecretName" -}}
{{- .Values.drive.existingSecret | default (include "platform.drive.fullname" .) }}
{{- end }}

{{- define "platform.appstoreSecretName" -}}
{{- .Values.appstore.existingSecret | default (include "platform.appstore.fullname" .) }}
{{- end }}

{{- /* DRIVE_BACKEND's name for backend.type. */ -}}
{{- define "platform.driveBackend" -}}
{{- if eq .Values.drive.backend.type "filesystem" }}fs{{ else }}{{ .Values.drive.backend.type }}{{ end }}
{{- end }}

{{- /*
A value for a chart-made Secret: the given one, else the one the release's Secret already
holds (so generated keys survive upgrades), else `length` random characters.
Call with (dict "root" $ "secret" NAME "key" KEY "value" VALUE "length" N).
*/ -}}
{{- define "platform.secretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $existing (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "platform.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{- /* Settings that cannot work together; the schema checks each value alone. */ -}}
{{- define "platform.checks" -}}
{{- if and (eq .Values.drive.backend.type "filesystem") (gt (int .Values.drive.replicas) 1) }}
{{- fail (printf "drive.replicas is %d, but the filesystem backend keeps objects on one volume: it needs drive.replicas 1 (or a cloud backend: s3, azure, gcs)" (int .Values.drive.replicas)) }}
{{- end }}
{{- if and .Values.ingress.tls.enabled (eq .Values.scheme "http") }}
{{- fail "ingress.tls.enabled needs scheme https: users would reach the hosts by https while the servers announce http URLs" }}
{{- end }}
{{- if and .Values.ingress.tls.enabled (not .Values.ingress.tls.secretName) }}
{{- fail "ingress.tls.enabled needs ingress.tls.secretName, the certificate of the App Store and Drive hosts" }}
{{- end }}
{{- if and .Values.oidc.waveClient.enabled (not .Values.appstore.existingSecret) (not .Values.oidc.waveClient.secret) }}
{{- fail "oidc.waveClient.enabled needs oidc.waveClient.secret (or the key wave-oidc-client-secret of appstore.existingSecret)" }}
{{- end }}
{{- $sched := .Values.appstore.scheduler }}
{{- if and $sched.defaultGpuType (not (has $sched.defaultGpuType $sched.allowedGpuTypes)) }}
{{- fail (printf "appstore.scheduler.defaultGpuType %q is not one of appstore.scheduler.allowedGpuTypes" $sched.defaultGpuType) }}
{{- end }}
{{- $defaults := 0 }}
{{- range .Values.appstore.runtimeVersions }}
{{- if .default }}{{ $defaults = add1 $defaults }}{{ end }}
{{- end }}
{{- if gt $defaults 1 }}
{{- fail "appstore.runtimeVersions: at most one runtime version may be the default" }}
{{- end }}
{{- end }}
