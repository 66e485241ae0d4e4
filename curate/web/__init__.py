"""From raw web crawls to documents: WARC/WET reading, HTML extraction, URL normalisation and dedup."""
