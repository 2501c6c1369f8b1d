# Installs what ishowtts needs into .\.venv on Windows (Windows PowerShell 5.1 or PowerShell 7).
#   scripts\install.ps1          the bot: torch built for this PC's NVIDIA driver (no NVIDIA GPU:
#                                the CPU build, and a banner saying the bot will speak with eSpeak NG)
#   scripts\install.ps1 -Test    plus the test tools (torch's CPU build)
# Every decision (which torch build) is made by bot\setup\installer.py, tested on Linux; this
# script only runs the steps, like scripts/install.sh. Re-running is cheap: the Python step is
# skipped while pyproject.toml is unchanged.
param([switch]$Test)
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
$kind = if ($Test) { "test" } else { "run" }
$py = ".venv\Scripts\python.exe"

function Invoke-Step([string]$what) {
    # Native programs report failure by exit status, which PowerShell does not turn into errors.
    if ($LASTEXITCODE -ne 0) { throw "$what failed (exit status $LASTEXITCODE): see the messages above" }
}

if (-not (Test-Path $py)) {
    # The py launcher (python.org installer) picks the newest Python 3; plain python otherwise.
    # @(...) keeps a one-element list a list (PowerShell would unwrap it to a string).
    $launcher = @(if (Get-Command py -ErrorAction SilentlyContinue) { "py", "-3" } else { "python" })
    $exe = $launcher[0]
    $rest = @($launcher | Select-Object -Skip 1)
    & $exe @rest -c "import sys; sys.exit(sys.version_info < (3, 11))"
    if ($LASTEXITCODE -ne 0) {
        throw "ishowtts needs Python 3.11 or newer: install it from https://www.python.org/downloads/ and run this again"
    }
    Write-Host "==> creating .venv"
    & $exe @rest -m venv .venv
    Invoke-Step "creating .venv"
}
$hash = (Get-FileHash pyproject.toml -Algorithm SHA256).Hash.Substring(0, 16).ToLower()
$stamp = ".venv\.ishowtts-$kind-$hash"
if (-not (Test-Path $stamp)) {
    Write-Host "==> installing Python packages ($kind); the first time this downloads several GB"
    & $py -m pip install -q --upgrade pip
    Invoke-Step "upgrading pip"
    & $py -m bot.setup.installer torch --python $py --profile $kind
    Invoke-Step "installing torch"
    if ($Test) { & $py -m pip install -q -e ".[test]" } else { & $py -m pip install -q -e . }
    Invoke-Step "installing ishowtts"
    Remove-Item ".venv\.ishowtts-$kind-*" -ErrorAction SilentlyContinue
    New-Item -ItemType File $stamp | Out-Null
}
