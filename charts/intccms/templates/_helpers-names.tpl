{{- /*
Names of objects. Kept in one place because several components refer to each other by name
(the Job to its ConfigMap and Secret, Grafana to Prometheus), so a rename cannot miss one.
*/ -}}

{{- define "intccms.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "intccms.fullname" -}}
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

{{- /* "<fullname>-<component>", cut to the 63 characters a name or label value may have. */ -}}
{{- define "intccms.componentName" -}}
{{- printf "%s-%s" (include "intccms.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "intccms.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "intccms.componentName" (dict "root" . "component" "job")) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* The Secret with storage credentials: the user's existing one or the chart's. */ -}}
{{- define "intccms.storageSecretName" -}}
{{- if .Values.storage.existingSecret -}}
{{- .Values.storage.existingSecret -}}
{{- else if or .Values.storage.credentials.accessKeyId .Values.storage.credentials.secretAccessKey -}}
{{- include "intccms.componentName" (dict "root" . "component" "storage") -}}
{{- end -}}
{{- end -}}

{{- define "intccms.grafanaAdminSecretName" -}}
{{- default (include "intccms.componentName" (dict "root" . "component" "grafana-admin")) .Values.grafana.admin.existingSecret -}}
{{- end -}}

{{- /* An image reference: repository@digest when a digest pins it, else repository:tag. */ -}}
{{- define "intccms.imageRef" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{- define "intccms.image" -}}
{{- include "intccms.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest) -}}
{{- end -}}

{{- define "intccms.prometheusUrl" -}}
{{- if .Values.grafana.datasourceUrl -}}
{{- .Values.grafana.datasourceUrl -}}
{{- else -}}
{{- printf "http://%s:9090" (include "intccms.componentName" (dict "root" . "component" "prometheus")) -}}
{{- end -}}
{{- end -}}

{{- /* The claim shared by the Job and the workers: the user's existing one or the chart's. */ -}}
{{- define "intccms.sharedClaimName" -}}
{{- if .Values.sharedVolume.enabled -}}
{{- default (include "intccms.componentName" (dict "root" . "component" "shared")) .Values.sharedVolume.existingClaim -}}
{{- end -}}
{{- end -}}
