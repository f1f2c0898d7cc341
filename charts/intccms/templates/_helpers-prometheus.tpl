{{- /*
Prometheus configuration for the facility. The project's files/prometheus/prometheus.yml is
written for local runs (file_sd targets); in Kubernetes the targets come from pod discovery
instead, so only its `global` block is reused here and the scrape jobs are generated. Rule
files are every files/prometheus/*.yaml except unit tests (*_test.yaml). Works when those
files are absent: then defaults apply and no rules are loaded.
*/ -}}

{{- define "intccms.prometheusRuleFiles" -}}
{{- $files := dict -}}
{{- range $path, $_ := .Files.Glob "files/prometheus/*.yaml" -}}
{{- if not (contains "_test" (base $path)) -}}
{{- $_ := set $files (base $path) ($.Files.Get $path) -}}
{{- end -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{- define "intccms.prometheusConfig" -}}
{{- $project := .Files.Get "files/prometheus/prometheus.yml" | fromYaml | default dict -}}
{{- $global := get $project "global" | default dict | deepCopy -}}
{{- $_ := set $global "scrape_interval" .Values.prometheus.scrapeInterval -}}
global:
  {{- toYaml $global | nindent 2 }}
rule_files:
  - /etc/prometheus/rules/*.yaml
scrape_configs:
  # Dask schedulers and workers of every run in this namespace: the operator labels their
  # pods with dask.org/component; both serve /metrics on the port named http-dashboard.
  - job_name: intccms-dask
    metrics_path: /metrics
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          own_namespace: true
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_dask_org_component]
        regex: scheduler|worker
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http-dashboard
        action: keep
      - source_labels: [__meta_kubernetes_pod_label_dask_org_component]
        target_label: intccms_role
      - source_labels: [__meta_kubernetes_pod_label_dask_org_cluster_name]
        target_label: dask_cluster
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
{{- end -}}
