"""Reports for people: colour maps now; tables, curves and HTML pages as they land."""
