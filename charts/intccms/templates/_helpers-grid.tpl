{{- /*
Grid credential volumes: the X509 proxy and the bearer token from Secrets (files, so a renewed
Secret reaches running pods), the CA certificates from a node directory, a ConfigMap or any
volume source. One list, in the shape of the project's cluster.kubernetes.file_volumes, feeds
the Job pod here and the scheduler and worker pods through the facility configuration, so all
three mount the same files at the same paths.
*/ -}}

{{- define "intccms.gridFileVolumes" -}}
{{- $g := .Values.grid -}}
{{- $vols := list -}}
{{- if $g.proxy.secretName -}}
{{- $vols = append $vols (dict "name" "grid-proxy" "mount_path" $g.proxy.mountPath "secret_name" $g.proxy.secretName "env" (dict "X509_USER_PROXY" $g.proxy.key)) -}}
{{- end -}}
{{- if $g.token.secretName -}}
{{- $vols = append $vols (dict "name" "grid-token" "mount_path" $g.token.mountPath "secret_name" $g.token.secretName "env" (dict "BEARER_TOKEN_FILE" $g.token.key)) -}}
{{- end -}}
{{- $ca := dict "name" "grid-certificates" "mount_path" $g.certificates.mountPath "env" (dict "X509_CERT_DIR" "") -}}
{{- if $g.certificates.hostPath -}}
{{- $vols = append $vols (set $ca "host_path" $g.certificates.hostPath) -}}
{{- else if $g.certificates.configMap -}}
{{- $vols = append $vols (set $ca "config_map_name" $g.certificates.configMap) -}}
{{- else if $g.certificates.volume -}}
{{- $vols = append $vols (set $ca "source" $g.certificates.volume) -}}
{{- end -}}
{{- toYaml $vols -}}
{{- end -}}

{{- /* Pod volumes of the grid list (Secrets owner-read-only; fsGroup adds group read). */ -}}
{{- define "intccms.gridPodVolumes" -}}
{{- range (fromYamlArray (include "intccms.gridFileVolumes" .)) }}
- name: {{ .name }}
  {{- if .secret_name }}
  secret:
    secretName: {{ .secret_name }}
    defaultMode: 0400
  {{- else if .config_map_name }}
  configMap:
    name: {{ .config_map_name }}
  {{- else if .host_path }}
  hostPath:
    path: {{ .host_path }}
    type: Directory
  {{- else }}
  {{- toYaml .source | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "intccms.gridMounts" -}}
{{- range (fromYamlArray (include "intccms.gridFileVolumes" .)) }}
- name: {{ .name }}
  mountPath: {{ .mount_path }}
  readOnly: true
{{- end }}
{{- end -}}

{{- /* X509_USER_PROXY, BEARER_TOKEN_FILE, X509_CERT_DIR: paths into the mounts, never contents. */ -}}
{{- define "intccms.gridEnv" -}}
{{- range (fromYamlArray (include "intccms.gridFileVolumes" .)) }}
{{- $mount := trimSuffix "/" .mount_path }}
{{- range $var, $file := .env }}
- name: {{ $var }}
  value: {{ ternary $mount (printf "%s/%s" $mount $file) (eq $file "") | quote }}
{{- end }}
{{- end }}
{{- end -}}
