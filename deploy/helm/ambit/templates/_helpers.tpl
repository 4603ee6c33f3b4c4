{{/* Names and labels shared by every template. */}}

{{- define "ambit.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "ambit.labels" -}}
app.kubernetes.io/name: ambit
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "agent"). */}}
{{- define "ambit.selector" -}}
app.kubernetes.io/name: ambit
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ambit.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .image.repository $tag -}}
{{- end -}}

{{/* Whether any handler needs the host's network: ONVIF (WS-Discovery
     multicast), mDNS (multicast DNS on the node's links) and udev (udevd's
     monitor messages are netlink multicasts that reach only the host's
     network namespace). */}}
{{- define "ambit.hostNetwork" -}}
{{- if or .Values.handlers.onvif.enabled .Values.handlers.mdns.enabled .Values.handlers.udev.enabled }}true{{ end -}}
{{- end -}}

{{/* The security context of containers that need root on the node
     (hostPath sockets owned by root), with nothing else. */}}
{{- define "ambit.nodeSecurityContext" -}}
{{- if .Values.handlers.modbus.serialDevices }}
privileged: true
{{- else }}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- end -}}

{{/* Volume mounts the enabled handlers need (agent and external handlers). */}}
{{- define "ambit.handlerMounts" -}}
{{- if .Values.handlers.udev.enabled }}
- { name: udev, mountPath: /run/udev, readOnly: true }
- { name: sys, mountPath: /sys, readOnly: true }
{{- end }}
{{- if .Values.handlers.bluetooth.enabled }}
- { name: dbus, mountPath: /run/dbus/system_bus_socket }
{{- end }}
{{- range $i, $dev := .Values.handlers.modbus.serialDevices }}
- { name: serial-{{ $i }}, mountPath: {{ $dev }} }
{{- end }}
{{- end -}}

{{- define "ambit.handlerVolumes" -}}
{{- if .Values.handlers.udev.enabled }}
- { name: udev, hostPath: { path: /run/udev, type: Directory } }
- { name: sys, hostPath: { path: /sys, type: Directory } }
{{- end }}
{{- if .Values.handlers.bluetooth.enabled }}
- { name: dbus, hostPath: { path: {{ .Values.handlers.bluetooth.dbusSocket }}, type: Socket } }
{{- end }}
{{- range $i, $dev := .Values.handlers.modbus.serialDevices }}
- { name: serial-{{ $i }}, hostPath: { path: {{ $dev }}, type: CharDevice } }
{{- end }}
{{- end -}}

{{- define "ambit.handlerEnv" -}}
{{- if .Values.handlers.bluetooth.enabled }}
- name: DBUS_SYSTEM_BUS_ADDRESS
  value: unix:path=/run/dbus/system_bus_socket
{{- end }}
{{- end -}}

{{/* The embedded handlers the agent runs: the enabled ones, comma-separated. */}}
{{- define "ambit.enabledHandlers" -}}
{{- $h := .Values.handlers -}}
{{- $names := list -}}
{{- if $h.debugEcho.enabled }}{{ $names = append $names "debug-echo" }}{{ end -}}
{{- if $h.mdns.enabled }}{{ $names = append $names "mdns" }}{{ end -}}
{{- if $h.modbus.enabled }}{{ $names = append $names "modbus" }}{{ end -}}
{{- if $h.mqtt.enabled }}{{ $names = append $names "mqtt" }}{{ end -}}
{{- if $h.opcua.enabled }}{{ $names = append $names "opcua" }}{{ end -}}
{{- if $h.onvif.enabled }}{{ $names = append $names "onvif" }}{{ end -}}
{{- if $h.udev.enabled }}{{ $names = append $names "udev" }}{{ end -}}
{{- if $h.bluetooth.enabled }}{{ $names = append $names "bluetooth" }}{{ end -}}
{{- join "," $names -}}
{{- end -}}
