"""The Windows 11 requirement bypasses Rufus offers, as an autounattend.xml at the root
of the stick: Windows Setup reads it by itself.

- tpm, secureboot, ram: the LabConfig registry values (HKLM\\SYSTEM\\Setup\\LabConfig
  BypassTPMCheck, BypassSecureBootCheck, BypassRAMCheck) set in the windowsPE pass, before
  Setup checks the hardware.
- online-account: BypassNRO (HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\OOBE) set in
  the specialize pass, so the out-of-box experience offers a local account.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from usbwriter.errors import BadInput

NAME = "autounattend.xml"
LABCONFIG = {
    "tpm": "BypassTPMCheck",
    "secureboot": "BypassSecureBootCheck",
    "ram": "BypassRAMCheck",
}
ONLINE = "online-account"
CHOICES = (*LABCONFIG, ONLINE)
WORDS = {
    "tpm": "TPM 2.0 check bypassed (LabConfig BypassTPMCheck)",
    "secureboot": "Secure Boot check bypassed (LabConfig BypassSecureBootCheck)",
    "ram": "RAM check bypassed (LabConfig BypassRAMCheck)",
    ONLINE: "local account allowed: no Microsoft account or network needed (OOBE BypassNRO)",
}
ARCHES = ("amd64", "arm64")


def parse(text: str) -> tuple[str, ...]:
    """'tpm,secureboot' -> ('tpm', 'secureboot'); BadInput naming an unknown choice."""
    chosen: list[str] = []
    for word in (w.strip().lower() for w in text.split(",")):
        if not word:
            continue
        if word == "all":
            chosen.extend(CHOICES)
            continue
        if word not in CHOICES:
            raise BadInput(
                f"--windows-bypass: unknown choice {word!r} (choose from {', '.join(CHOICES)}, "
                "or all)"
            )
        chosen.append(word)
    return tuple(c for c in CHOICES if c in chosen)


def _command(order: int, line: str) -> str:
    return (
        '        <RunSynchronousCommand wcm:action="add">\n'
        f"          <Order>{order}</Order>\n"
        f"          <Path>{escape(line)}</Path>\n"
        "        </RunSynchronousCommand>\n"
    )


def _component(name: str, arch: str, body: str) -> str:
    return (
        f'    <component name="{name}" processorArchitecture="{arch}" '
        'publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS" '
        'xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{body}"
        "    </component>\n"
    )


def autounattend(choices: tuple[str, ...]) -> bytes:
    """The autounattend.xml setting CHOICES (see the module's docstring)."""
    lab = [LABCONFIG[c] for c in CHOICES if c in LABCONFIG and c in choices]
    settings = []
    if lab:
        cmds = "".join(
            _command(i, f"reg add HKLM\\SYSTEM\\Setup\\LabConfig /v {value} /t REG_DWORD /d 1 /f")
            for i, value in enumerate(lab, 1)
        )
        body = "      <RunSynchronous>\n" + cmds + "      </RunSynchronous>\n"
        comps = "".join(_component("Microsoft-Windows-Setup", a, body) for a in ARCHES)
        settings.append(f'  <settings pass="windowsPE">\n{comps}  </settings>\n')
    if ONLINE in choices:
        line = (
            "reg add HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\OOBE "
            "/v BypassNRO /t REG_DWORD /d 1 /f"
        )
        body = "      <RunSynchronous>\n" + _command(1, line) + ("      </RunSynchronous>\n")
        comps = "".join(_component("Microsoft-Windows-Deployment", a, body) for a in ARCHES)
        settings.append(f'  <settings pass="specialize">\n{comps}  </settings>\n')
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<unattend xmlns="urn:schemas-microsoft-com:unattend">\n'
        + "".join(settings)
        + "</unattend>\n"
    )
    return text.encode("utf-8")
