{{/*
Render-time guards. Secrets belong in `existingSecret`; anything that looks like a
plaintext credential in values stops the render with a message saying where it is and
what to do instead. values.schema.json checks shapes; these check content.
*/}}
{{- define "weft.validate" -}}
{{- $fix := "Put it in the Secret named by existingSecret.name and reference it (WEFT_DATABASE_URL comes from existingSecret.databaseUrlKey; provider credentials use *_file or *_env keys in `config`)." }}

{{- /* 1. No database settings in values: the URL, with its password, is a secret. */}}
{{- if .Values.database }}
{{- fail (printf "database.%s is set in values, but database settings (and above all passwords) must not be in values. %s" (keys .Values.database | sortAlpha | join ", database.") $fix) }}
{{- end }}

{{- /* 2. No URL with an embedded password anywhere in values (postgres://user:pass@host). */}}
{{- $all := toYaml .Values }}
{{- if regexMatch "[A-Za-z][A-Za-z0-9+.-]*://[^/\\s:@'\"]*:[^/\\s@'\"]+@" $all }}
{{- fail (printf "values contain a URL with an embedded password (%s). %s" (regexFind "[A-Za-z][A-Za-z0-9+.-]*://[^/\\s:@'\"]*:" $all) $fix) }}
{{- end }}

{{- /* 3. No YAML key in values that names a secret and carries a literal value. */}}
{{- $yamlKey := "(?im)^[ \\t-]*[A-Za-z0-9_]*(password|passwd|secret|token|apikey|api_key|privatekey|private_key)[ \\t]*:[ \\t]*[^ \\t\\r\\n|>#]" }}
{{- if regexMatch $yamlKey $all }}
{{- $where := regexFind $yamlKey $all | regexFind "[A-Za-z0-9_]+[ \\t]*:" | trimSuffix ":" | trim }}
{{- fail (printf "values contain a plaintext credential (key %q has a literal value). %s" $where $fix) }}
{{- end }}

{{- /* 4. No literal credential in weft.toml: such keys must be *_env or *_file. */}}
{{- $tomlKey := "(?im)(^|[\\s{,.])\"?[A-Za-z0-9_-]*(password|passwd|secret|token|key)\"?[ \\t]*=[ \\t]*['\"]" }}
{{- range $line := splitList "\n" (.Values.config | default "") }}
{{- if and (not (hasPrefix "#" (trim $line))) (regexMatch $tomlKey $line) }}
{{- $key := regexFind "[A-Za-z0-9_-]*(password|passwd|secret|token|key)\"?[ \\t]*=" (lower $line) | trimSuffix "=" | trimSuffix " " | trimSuffix "\"" }}
{{- fail (printf "config (weft.toml) has a literal credential (%s = \"...\"). Use %s_file (the Secret is mounted at existingSecret.mountPath) or %s_env. %s" $key $key $key $fix) }}
{{- end }}
{{- end }}

{{- /* 5. No literal values for secret-looking environment variables. */}}
{{- range .Values.extraEnv }}
{{- if and (hasKey . "value") (regexMatch "(?i)(PASSWORD|PASSWD|SECRET|TOKEN|KEY|DATABASE_URL)" .name) }}
{{- fail (printf "extraEnv %s has a literal value; use valueFrom.secretKeyRef. %s" .name $fix) }}
{{- end }}
{{- end }}
{{- end }}
