"""VOTable documents shared by the endpoints: the error document (DALI §4.4.2)."""

from __future__ import annotations

import re

from lxml import etree

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
VOTABLE_TYPE = "application/x-votable+xml"


def element(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    """A VOTable child element (the namespace is VOTable 1.3's, used by 1.4 too)."""
    return etree.SubElement(parent, f"{{{VOTABLE_NS}}}{tag}", attrs)


def root() -> etree._Element:
    return etree.Element(f"{{{VOTABLE_NS}}}VOTABLE", nsmap={None: VOTABLE_NS}, version="1.4")


def serialize(document: etree._Element) -> bytes:
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8")


# What XML 1.0 cannot carry: C0 controls but tab, newline and return; lone surrogates; U+FFFE/F.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` with every character XML cannot carry written as an escape (\\x00, \\ud800)."""
    return NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def error_document(text: str) -> bytes:
    """DALI §4.4.2: a VOTable whose results RESOURCE holds QUERY_STATUS=ERROR. Any text
    goes, also one quoting a request's control characters: they are written as escapes."""
    document = root()
    resource = element(document, "RESOURCE", type="results")
    element(resource, "INFO", name="QUERY_STATUS", value="ERROR").text = xml_text(text)
    return serialize(document)
