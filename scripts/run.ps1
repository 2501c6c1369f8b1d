# Installs on first use, then runs the bot with .\config.yaml (extra arguments go to ishowtts).
#   powershell -ExecutionPolicy Bypass -File scripts\run.ps1            the bot
#   powershell -ExecutionPolicy Bypass -File scripts\run.ps1 doctor     what to fix first
# The Windows twin of scripts/run.sh.
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
& "$PSScriptRoot\install.ps1"
& .venv\Scripts\ishowtts.exe @args
exit $LASTEXITCODE
