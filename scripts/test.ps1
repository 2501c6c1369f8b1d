# Installs the test dependencies, checks formatting, lint and types, runs pytest (Windows twin of
# scripts/test.sh; extra arguments go to pytest). Tests that need Linux (PulseAudio, inotify,
# chattr, mount namespaces) skip themselves and say why.
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
& "$PSScriptRoot\install.ps1" -Test
function Invoke-Check([string]$what, [scriptblock]$run) {
    Write-Host "==> $what"
    & $run
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}
Invoke-Check "ruff" { .venv\Scripts\ruff.exe format --check bot engine tests bench; if ($LASTEXITCODE -eq 0) { .venv\Scripts\ruff.exe check bot engine tests bench } }
Invoke-Check "mypy" { .venv\Scripts\mypy.exe }
Invoke-Check "import rules (docs/architecture.md)" { .venv\Scripts\lint-imports.exe --no-cache }
Write-Host "==> pytest"
& .venv\Scripts\pytest.exe @args
exit $LASTEXITCODE
