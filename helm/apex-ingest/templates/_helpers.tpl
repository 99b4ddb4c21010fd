{{/* Names and labels. */}}
{{- define "apex-ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "apex-ingest.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "apex-ingest.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "apex-ingest.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "apex-ingest.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "apex-ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "run"). */}}
{{- define "apex-ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apex-ingest.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "apex-ingest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "apex-ingest.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whole seconds of a duration written as 25s, 2m, 1h or 500ms (rounded up). */}}
{{- define "apex-ingest.seconds" -}}
{{- $d := toString . -}}
{{- $n := regexFind "^[0-9]+" $d | int -}}
{{- $unit := trimPrefix (toString $n) $d -}}
{{- if eq $unit "ms" -}}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" -}}{{ $n }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else if eq $unit "h" -}}{{ mul $n 3600 }}
{{- else -}}{{ fail (printf "cannot read the duration %q: write it as 25s, 2m, 1h or 500ms" $d) }}
{{- end -}}
{{- end -}}

{{/*
The port of the listen address config.<section>.listen, which must reach
beyond localhost (probes, Services and Prometheus come from outside the pod):
(dict "config" .Values.config "section" "metrics" "default" "127.0.0.1:9464").
*/}}
{{- define "apex-ingest.port" -}}
{{- $listen := toString (dig .section "listen" .default .config) -}}
{{- if hasPrefix "127." $listen -}}
{{- fail (printf "config.%s.listen (%s) must listen beyond localhost, e.g. 0.0.0.0%s: probes, Services and Prometheus reach it from outside the pod" .section $listen (regexFind ":[0-9]+$" .default)) -}}
{{- end -}}
{{- $port := regexFind "[0-9]+$" $listen -}}
{{- if not $port -}}{{ fail (printf "config.%s.listen (%s) has no port" .section $listen) }}{{- end -}}
{{- $port -}}
{{- end -}}

{{/*
One Deployment of apex-ingest: (dict "root" $ "component" "run" "values" .Values.run
"port" 9464). The component is also the subcommand; /readyz and /healthz are
served on the port.
*/}}
{{- define "apex-ingest.deployment" -}}
{{- $root := .root -}}
{{- $values := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "apex-ingest.fullname" $root }}-{{ .component }}
  labels:
    {{- include "apex-ingest.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $values.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "apex-ingest.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "apex-ingest.selectorLabels" . | nindent 8 }}
      annotations:
        # A changed configuration rolls the pods.
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "apex-ingest.serviceAccountName" $root }}
      # Pods reach services by DNS name; Kubernetes' <SERVICE>_PORT variables
      # (APEX_EDGE_PORT for a release named apex) only look like configuration.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ $root.Values.podSecurityContext.runAsUser }}
        runAsGroup: {{ $root.Values.podSecurityContext.runAsGroup }}
        fsGroup: {{ $root.Values.podSecurityContext.fsGroup }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ .component }}
          image: "{{ $root.Values.image.repository }}:{{ default $root.Chart.AppVersion $root.Values.image.tag }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .component | quote }}, "--config", "/etc/apex-ingest/apex-ingest.toml"]
          ports:
            - name: http
              containerPort: {{ .port }}
          env:
            {{- if eq .component "worker" }}
            # The worker's version (temporal.build_id; with temporal.deployment_name,
            # its Worker Deployment version) is its image's tag.
            - name: APEX_TEMPORAL_BUILD_ID
              value: {{ default $root.Chart.AppVersion $root.Values.image.tag | quote }}
            {{- end }}
            {{- range $name, $value := $root.Values.extraEnv }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
            {{- range $name, $key := $root.Values.secrets.env }}
            - name: {{ $name }}
              valueFrom:
                secretKeyRef:
                  name: {{ required "secrets.env maps variables to keys of secrets.existingSecret: name that Secret" $root.Values.secrets.existingSecret }}
                  key: {{ $key }}
            {{- end }}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            failureThreshold: 3
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            initialDelaySeconds: 10
            periodSeconds: 10
            failureThreshold: 6
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - {name: config, mountPath: /etc/apex-ingest, readOnly: true}
            - {name: data, mountPath: /data}
            - {name: tmp, mountPath: /tmp}
            {{- range $root.Values.secrets.files }}
            - {name: secret-{{ .name }}, mountPath: /etc/apex-secrets/{{ .name }}, readOnly: true}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "apex-ingest.fullname" $root }}
        - name: data
          emptyDir: {}
        - name: tmp
          emptyDir: {}
        {{- range $root.Values.secrets.files }}
        # Group-readable for fsGroup; kubelet swaps the files when the Secret changes.
        - name: secret-{{ .name }}
          secret: {secretName: {{ .secretName }}, defaultMode: 0440}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* A PodDisruptionBudget of one component: (dict "root" $ "component" "run" "values" .Values.run). */}}
{{- define "apex-ingest.pdb" -}}
{{- if .values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "apex-ingest.fullname" .root }}-{{ .component }}
  labels:
    {{- include "apex-ingest.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "apex-ingest.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Is the Temporal worker on? (temporal.rollout_percent above 0) */}}
{{- define "apex-ingest.temporalOn" -}}
{{- if gt (int (dig "temporal" "rollout_percent" 0 .Values.config)) 0 -}}true{{- end -}}
{{- end -}}

{{/* A headless Service a ServiceMonitor scrapes: (dict "root" $ "component" "run"). */}}
{{- define "apex-ingest.metricsService" -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "apex-ingest.fullname" .root }}-{{ .component }}-metrics
  labels:
    {{- include "apex-ingest.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    apex-ingest/metrics: "true"
spec:
  clusterIP: None
  selector:
    {{- include "apex-ingest.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .port }}
      targetPort: http
{{- end -}}

{{/*
The configuration as TOML: (dict "name" "" "table" .Values.config). Helm's own
toToml writes every YAML number as a float (12.0), which integer keys refuse.
*/}}
{{- define "apex-ingest.tomlTable" -}}
{{- if .name }}
[{{ .name }}]
{{- end }}
{{- range $key, $value := .table }}
{{- if not (kindIs "map" $value) }}
{{ $key }} = {{ include "apex-ingest.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .table }}
{{- if kindIs "map" $value }}
{{ include "apex-ingest.tomlTable" (dict "name" (ternary $key (printf "%s.%s" $.name $key) (empty $.name)) "table" $value) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "apex-ingest.tomlValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else if or (kindIs "int64" .) (kindIs "int" .) (kindIs "bool" .) -}}{{ . }}
{{- else if kindIs "slice" . -}}{{ toJson . }}
{{- else -}}{{ toJson (toString .) }}
{{- end -}}
{{- end -}}

{{- /* The Service clients reach a component's HTTP port by, and its optional
Ingress, which routes only .path (metrics stay inside the cluster).
Takes root, component, values (with service and ingress) and path. */ -}}
{{- define "apex-ingest.publicService" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s" (include "apex-ingest.fullname" $root) .component -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "apex-ingest.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  type: {{ .values.service.type }}
  selector:
    {{- include "apex-ingest.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .values.service.port }}
      targetPort: http
{{- with .values.ingress }}
{{- if .enabled }}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ $name }}
  labels:
    {{- include "apex-ingest.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if .tlsSecretName }}
  tls:
    - hosts: [{{ required (printf "%s.ingress.host is needed with TLS" $.component) .host | quote }}]
      secretName: {{ .tlsSecretName }}
  {{- end }}
  rules:
    - {{- with .host }}
      host: {{ . | quote }}
      {{- end }}
      http:
        paths:
          - path: {{ $.path }}
            pathType: Prefix
            backend:
              service:
                name: {{ $name }}
                port:
                  name: http
{{- end }}
{{- end }}
{{- end -}}
