"""Clutter that operating systems, desktop tools and sync clients add to folders: skipped, never data."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Exact names (compared case-insensitively: Windows and SMB shares change their case), by the tool that
# writes them. A folder of one of these names is skipped with everything below it.
JUNK_NAMES: dict[str, str] = {
    # macOS
    "__MACOSX": "macOS resource fork folder",
    ".DS_Store": "macOS folder metadata",
    ".AppleDouble": "macOS resource fork folder",
    ".AppleDB": "macOS AFP database",
    ".AppleDesktop": "macOS AFP desktop database",
    ".apdisk": "macOS AFP disk metadata",
    ".Spotlight-V100": "macOS Spotlight index",
    ".Trashes": "macOS trash",
    ".fseventsd": "macOS file-system event log",
    ".TemporaryItems": "macOS temporary items",
    ".DocumentRevisions-V100": "macOS document versions",
    ".VolumeIcon.icns": "macOS volume icon",
    ".com.apple.timemachine.donotpresent": "macOS Time Machine marker",
    "Icon\r": "macOS custom folder icon",
    "Network Trash Folder": "macOS AFP trash",
    "Temporary Items": "macOS AFP temporary items",
    # Windows
    "Thumbs.db": "Windows thumbnail cache",
    "ehthumbs.db": "Windows Media Center thumbnail cache",
    "ehthumbs_vista.db": "Windows Media Center thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "$RECYCLE.BIN": "Windows recycle bin",
    "RECYCLER": "Windows recycle bin",
    "System Volume Information": "Windows volume metadata",
    # Linux desktops
    ".directory": "KDE folder settings",
    "lost+found": "file-system recovery folder",
    # sync clients and NAS
    ".dropbox": "Dropbox metadata",
    ".dropbox.attr": "Dropbox metadata",
    ".dropbox.cache": "Dropbox cache",
    ".sync": "Resilio Sync metadata",
    ".stfolder": "Syncthing folder marker",
    ".stignore": "Syncthing ignore list",
    ".stversions": "Syncthing old versions",
    ".tmp.drivedownload": "Google Drive partial download",
    ".tmp.driveupload": "Google Drive partial upload",
    ".picasa.ini": "Picasa metadata",
    "Picasa.ini": "Picasa metadata",
    "@eaDir": "Synology thumbnail folder",
    "#recycle": "Synology recycle bin",
    "#snapshot": "Synology snapshots",
    ".@__thumb": "QNAP thumbnail folder",
    # developer tools
    ".git": "Git repository data",
    ".svn": "Subversion metadata",
    ".hg": "Mercurial repository data",
    ".ipynb_checkpoints": "Jupyter checkpoints",
    "__pycache__": "Python bytecode cache",
}
_BY_FOLDED_NAME = {name.casefold(): reason for name, reason in JUNK_NAMES.items()}

# Name patterns, checked in order on each part.
JUNK_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\._"), "macOS AppleDouble file"),
    (re.compile(r"^\.~lock\..*#$"), "LibreOffice lock file"),
    (re.compile(r"^~\$"), "Microsoft Office temporary file"),
    (re.compile(r"^\.Trash-\d+$"), "Linux desktop trash"),
    (re.compile(r"^\.nfs[0-9a-fA-F]+"), "NFS removed-while-open file"),
    (re.compile(r"^\.fuse_hidden"), "FUSE removed-while-open file"),
    (re.compile(r"^\.syncthing\..*\.tmp$"), "Syncthing partial file"),
    (re.compile(r"^\.sync\.ffs_db$|\.ffs_(db|lock)$"), "FreeFileSync database"),
)


def junk_reason(parts: Sequence[str]) -> str | None:
    """Why a path (its parts, outermost first) is clutter to skip, or None when it may be dataset content.

    Any hidden part (a leading '.') is clutter too: no tool writes a dataset's images under hidden names.
    """
    for part in parts:
        reason = _BY_FOLDED_NAME.get(part.casefold())
        if reason:
            return reason
        for pattern, pattern_reason in JUNK_PATTERNS:
            if pattern.search(part):
                return pattern_reason
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    return None


def listed_reason(part: str) -> str | None:
    """The reason when `part` is one of JUNK_NAMES (in any case), else None."""
    return _BY_FOLDED_NAME.get(part.casefold())


def is_junk_name(part: str) -> bool:
    """One name (a file or folder) is clutter on its own."""
    return junk_reason((part,)) is not None
