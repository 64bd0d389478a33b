//! Just enough XML writing for EB's responses.

pub(crate) const NS: &str = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/";

#[derive(Default)]
pub(crate) struct Xml(String);

impl Xml {
    pub fn open(&mut self, tag: &str) {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
    }

    pub fn close(&mut self, tag: &str) {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
    }

    pub fn leaf(&mut self, tag: &str, text: &str) {
        self.open(tag);
        self.0.push_str(&escape(text));
        self.close(tag);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
