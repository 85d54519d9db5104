{{/*
Names: an app's objects are named after it (dmp-mqtt, dmp-kernel, dmp-data) in a release called "dmp",
else prefixed with the release's name (prod-dmp-mqtt). The other objects start with dmp.prefix.
*/}}
{{- define "dmp.release" -}}
{{- .Release.Name | trunc 30 | trimSuffix "-" -}}
{{- end -}}

{{- define "dmp.prefix" -}}
{{- if eq .Release.Name "dmp" -}}dmp{{- else -}}{{ include "dmp.release" . }}-dmp{{- end -}}
{{- end -}}

{{- define "dmp.name" -}}
{{- if eq .root.Release.Name "dmp" -}}{{ .app }}{{- else -}}{{ printf "%s-%s" (include "dmp.release" .root) .app }}{{- end -}}
{{- end -}}

{{- define "dmp.selectorLabels" -}}
app.kubernetes.io/name: {{ .app }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "dmp.labels" -}}
{{ include "dmp.selectorLabels" . }}
app.kubernetes.io/part-of: dmp
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "dmp.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .app (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* A secret's entry as an env var: from the Secret named in values, never from a default. */}}
{{- define "dmp.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.existingSecret is required: the name of a Secret holding the DMP secrets (docs/kubernetes.md)" .root.Values.secrets.existingSecret }}
      key: {{ .key }}
{{- end -}}

{{/* Settings every app shares (libs/config/src/sections.ts). */}}
{{- define "dmp.commonEnv" -}}
- name: HTTP_HOST
  value: 0.0.0.0
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: OTEL_ENABLED
  value: {{ ternary "true" "false" (ne .Values.tracing.otlpEndpoint "") | quote }}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLE_RATIO
  value: {{ .Values.tracing.sampleRatio | quote }}
- name: ROCKETMQ_ENDPOINTS
  value: {{ .Values.rocketmq.endpoints | quote }}
- name: ROCKETMQ_NAMESPACE
  value: {{ .Values.rocketmq.namespace | quote }}
{{- end -}}

{{/* REDIS_URL with the password of the Secret (DMP_REDIS_PASSWORD, declared first). */}}
{{- define "dmp.redisEnv" -}}
{{ include "dmp.secretEnv" (dict "root" . "name" "DMP_REDIS_PASSWORD" "key" .Values.secrets.keys.redisPassword) }}
- name: REDIS_URL
  value: {{ printf "%s://%s:$(DMP_REDIS_PASSWORD)@%s:%v" (ternary "rediss" "redis" .Values.redis.tls) .Values.redis.username .Values.redis.host .Values.redis.port | quote }}
{{- end -}}

{{/*
The broker(s) an app connects to: MQTT_URL from emqx.<key> (one broker), or MQTT_URLS from the <key>
of every emqx.brokers entry (several independent brokers, docs/adr/0008).
*/}}
{{- define "dmp.brokerUrlEnv" -}}
{{- $root := .root -}}
{{- $key := .key -}}
{{- if $root.Values.emqx.brokers }}
{{- $urls := list }}
{{- range $i, $broker := $root.Values.emqx.brokers }}
{{- $url := get $broker $key }}
{{- if not $url }}{{ fail (printf "emqx.brokers[%d].%s is not set" $i $key) }}{{ end }}
{{- $urls = append $urls $url }}
{{- end }}
- name: MQTT_URLS
  value: {{ join "," $urls | quote }}
{{- else }}
- name: MQTT_URL
  value: {{ get $root.Values.emqx $key | quote }}
{{- end }}
{{- end -}}

{{/* The app's own extra variables (<app>.env). */}}
{{- define "dmp.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
Probes. /health answers 200 only while every dependency is up: it decides readiness. Liveness and
start-up only ask whether the process serves HTTP, so an outage of Redis, RocketMQ or ClickHouse takes
pods out of Services without restarting them in a loop (docs/operations.md, note 6).
*/}}
{{- define "dmp.probes" -}}
startupProbe:
  tcpSocket: { port: http }
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  tcpSocket: { port: http }
  periodSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet: { path: /health, port: http }
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{- define "dmp.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 1000
  runAsGroup: 1000
  fsGroup: 1000
  seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{- define "dmp.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities: { drop: [ALL] }
{{- end -}}

{{- define "dmp.scheduling" -}}
{{- with .imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .app.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .app.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .app.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .app.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
HorizontalPodAutoscaler on CPU and, when enabled, on the age of the app's RocketMQ backlog: the p99 of
dmp_rocketmq_delivery_delay_seconds for the app's `service` label, served as an External metric (e.g.
by prometheus-adapter, docs/kubernetes.md). The HPA takes the larger of the two proposals.
*/}}
{{- define "dmp.hpa" -}}
{{- $a := .autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "dmp.name" . }}
  labels:
    {{- include "dmp.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ include "dmp.name" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: { type: Utilization, averageUtilization: {{ $a.targetCPUUtilizationPercentage }} }
    {{- if $a.backlogAge.enabled }}
    - type: External
      external:
        metric:
          name: {{ $a.backlogAge.metricName }}
          selector:
            matchLabels: { service: {{ .app }} }
        target: { type: Value, value: {{ $a.backlogAge.targetSeconds | quote }} }
    {{- end }}
  behavior:
    # Scale down slowly: a consumer that leaves hands its queues over (a pause in consumption).
    scaleDown:
      stabilizationWindowSeconds: 300
      policies: [{ type: Pods, value: 1, periodSeconds: 120 }]
{{- end -}}

{{/* minAvailable when set (it wins over the default maxUnavailable), else maxUnavailable. */}}
{{- define "dmp.pdb" -}}
{{- if hasKey . "minAvailable" }}{{ if not (kindIs "invalid" .minAvailable) -}}
minAvailable: {{ .minAvailable }}
{{- else -}}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}{{ else -}}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- end -}}
