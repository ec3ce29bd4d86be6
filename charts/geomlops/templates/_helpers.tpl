{{/* Names, labels, images and the credentials every object shares. */}}

{{- define "geomlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "geomlops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "geomlops.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "geomlops.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "geomlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "geomlops.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "geomlops.labels" -}}
{{ include "geomlops.selectorLabels" . }}
app.kubernetes.io/part-of: geomlops
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The platform image; the WorkflowTemplates' platform steps run it too. */}}
{{- define "geomlops.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{- define "geomlops.component" -}}
{{- printf "%s-%s" (include "geomlops.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Secrets: the chart's own credentials, and where each credential is read from. */}}
{{- define "geomlops.credentialsSecret" -}}
{{- printf "%s-credentials" (include "geomlops.fullname" .) -}}
{{- end -}}

{{- define "geomlops.platformSecretName" -}}
{{- .Values.platformSecret.name -}}
{{- end -}}

{{/* secretKeyRef of the database DSN (postgresql://user:pass@host:port). */}}
{{- define "geomlops.dbDsnRef" -}}
{{- if eq .Values.postgresql.mode "external" -}}
name: {{ .Values.postgresql.external.existingSecret }}
key: {{ .Values.postgresql.external.dsnKey }}
{{- else -}}
name: {{ include "geomlops.credentialsSecret" . }}
key: db-dsn
{{- end -}}
{{- end -}}

{{- define "geomlops.s3AccessKeyRef" -}}
{{- if eq .Values.objectStore.mode "external" -}}
name: {{ .Values.objectStore.external.existingSecret }}
key: {{ .Values.objectStore.external.accessKeyKey }}
{{- else -}}
name: {{ include "geomlops.credentialsSecret" . }}
key: s3-access-key
{{- end -}}
{{- end -}}

{{- define "geomlops.s3SecretKeyRef" -}}
{{- if eq .Values.objectStore.mode "external" -}}
name: {{ .Values.objectStore.external.existingSecret }}
key: {{ .Values.objectStore.external.secretKeyKey }}
{{- else -}}
name: {{ include "geomlops.credentialsSecret" . }}
key: s3-secret-key
{{- end -}}
{{- end -}}

{{/* In-cluster URLs of the services (Service DNS names). */}}
{{- define "geomlops.stacUrl" -}}
{{- printf "http://%s:%d" (include "geomlops.component" (dict "root" . "component" "stac")) (int .Values.stac.port) -}}
{{- end -}}

{{- define "geomlops.mlflowUrl" -}}
{{- printf "http://%s:%d" (include "geomlops.component" (dict "root" . "component" "mlflow")) (int .Values.mlflow.port) -}}
{{- end -}}

{{- define "geomlops.s3Port" -}}
{{- if eq .Values.objectStore.mode "minio" -}}9000{{- else -}}8333{{- end -}}
{{- end -}}

{{- define "geomlops.s3EndpointUrl" -}}
{{- if eq .Values.objectStore.mode "external" -}}
{{- .Values.objectStore.external.endpointUrl -}}
{{- else -}}
{{- printf "http://%s:%s" (include "geomlops.component" (dict "root" . "component" "s3")) (include "geomlops.s3Port" .) -}}
{{- end -}}
{{- end -}}

{{- define "geomlops.dbHost" -}}
{{- include "geomlops.component" (dict "root" . "component" "postgresql") -}}
{{- end -}}

{{/* A generated credential: the given value, else the installed one, else a new one. */}}
{{- define "geomlops.credential" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "geomlops.credentialsSecret" .root) -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the platform's containers: the database and S3 settings. */}}
{{- define "geomlops.dbEnv" -}}
- name: GEOMLOPS_DB_DSN
  valueFrom:
    secretKeyRef:
      {{- include "geomlops.dbDsnRef" . | nindent 6 }}
{{- if eq .Values.postgresql.mode "bundled" }}
- name: GEOMLOPS_DB_APP_USER
  value: {{ .Values.postgresql.bundled.appUser | quote }}
{{- end }}
- name: GEOMLOPS_DB_PGSTAC_DATABASE
  value: {{ .Values.postgresql.databases.pgstac | quote }}
- name: GEOMLOPS_DB_MLFLOW_DATABASE
  value: {{ .Values.postgresql.databases.mlflow | quote }}
{{- end -}}

{{/* The owner's DSN, for the Jobs that migrate and bootstrap (bundled PostgreSQL only; an
external server's one DSN serves both). */}}
{{- define "geomlops.dbOwnerEnv" -}}
{{- if eq .Values.postgresql.mode "bundled" }}
- name: GEOMLOPS_DB_OWNER_DSN
  valueFrom:
    secretKeyRef:
      name: {{ include "geomlops.credentialsSecret" . }}
      key: db-owner-dsn
{{- end }}
{{- end -}}

{{/* The platform's MLflow account: MLflow's basic-auth app refuses requests without it. */}}
{{- define "geomlops.mlflowAuthEnv" -}}
- name: GEOMLOPS_MLFLOW_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "geomlops.credentialsSecret" . }}
      key: mlflow-password
{{- end -}}

{{- define "geomlops.s3Env" -}}
- name: GEOMLOPS_S3_ENDPOINT_URL
  value: {{ include "geomlops.s3EndpointUrl" . | quote }}
- name: GEOMLOPS_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      {{- include "geomlops.s3AccessKeyRef" . | nindent 6 }}
- name: GEOMLOPS_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      {{- include "geomlops.s3SecretKeyRef" . | nindent 6 }}
- name: GEOMLOPS_S3_REGION
  value: {{ .Values.objectStore.region | quote }}
- name: GEOMLOPS_S3_BUCKET_MLFLOW
  value: {{ .Values.objectStore.buckets.mlflow | quote }}
- name: GEOMLOPS_S3_BUCKET_DVC
  value: {{ .Values.objectStore.buckets.dvc | quote }}
- name: GEOMLOPS_S3_BUCKET_IMAGERY
  value: {{ .Values.objectStore.buckets.imagery | quote }}
- name: GEOMLOPS_S3_BUCKET_PREDICTIONS
  value: {{ .Values.objectStore.buckets.predictions | quote }}
- name: GEOMLOPS_S3_BUCKET_AUDIT
  value: {{ .Values.objectStore.buckets.audit | quote }}
{{- end -}}

{{/* Pod-level settings shared by the platform's pods (image, security, scratch space). */}}
{{- define "geomlops.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
automountServiceAccountToken: false
volumes:
  - name: tmp
    emptyDir: {}
{{- end -}}

{{- define "geomlops.containerCommon" -}}
image: {{ include "geomlops.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}
