//! Every string the console shows, one catalogue per language ([`VI`], [`EN`]): a page never
//! holds a word of its own, so a translation is a change to this file only. The language of a
//! request is its `lang` switch (a query parameter, remembered in a cookie), else the first
//! language of its `Accept-Language` that the console speaks, else English.

use http::HeaderMap;

/// A language the console speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Vietnamese.
    Vi,
    /// English.
    En,
}

impl Lang {
    /// Returns the language of a BCP 47 tag (`vi`, `vi-VN`, `en-GB`), if spoken.
    pub fn of_tag(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Returns the `lang` attribute and switch value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// Returns the catalogue.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::Vi => &VI,
            Lang::En => &EN,
        }
    }

    /// Returns the language of a request: the switch (`?lang=`), else the `lang` cookie,
    /// else `Accept-Language`, else English.
    pub fn choose(switch: Option<&str>, cookie: Option<&str>, headers: &HeaderMap) -> Self {
        switch
            .and_then(Lang::of_tag)
            .or_else(|| cookie.and_then(Lang::of_tag))
            .or_else(|| {
                headers
                    .get(http::header::ACCEPT_LANGUAGE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(preferred)
            })
            .unwrap_or(Lang::En)
    }
}

/// Returns the spoken language an `Accept-Language` value prefers most (RFC 9110 §12.5.4:
/// the highest `q`, the first listed among equals; `q=0` means "not this one").
fn preferred(accept: &str) -> Option<Lang> {
    let mut best: Option<(Lang, u32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(Lang::of_tag) else {
            continue;
        };
        let weight = parts
            .find_map(|parameter| parameter.trim().strip_prefix("q="))
            .map_or(1000, |q| {
                (q.trim().parse::<f32>().unwrap_or(0.0) * 1000.0) as u32
            });
        if weight > 0 && best.is_none_or(|(_, best_weight)| weight > best_weight) {
            best = Some((lang, weight));
        }
    }
    best.map(|(lang, _)| lang)
}

/// The strings of one language.
#[allow(missing_docs, reason = "each field is the string its name says")]
pub struct Text {
    pub title: &'static str,
    pub switch_to: &'static str,
    pub sign_in_heading: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub password_again: &'static str,
    pub totp_code: &'static str,
    pub sign_in: &'static str,
    pub login_failed: &'static str,
    pub too_many_attempts: &'static str,
    pub enrol_heading: &'static str,
    pub enrol_intro: &'static str,
    pub totp_key: &'static str,
    pub enrol_button: &'static str,
    pub enrol_link_invalid: &'static str,
    pub password_too_short: &'static str,
    pub password_common: &'static str,
    pub password_mismatch: &'static str,
    pub totp_wrong: &'static str,
    pub enrolled: &'static str,
    pub signed_in_as: &'static str,
    pub roles: &'static str,
    pub sign_out: &'static str,
    pub issue_heading: &'static str,
    pub region: &'static str,
    pub report_type: &'static str,
    pub confirmed_test: &'static str,
    pub clinical_diagnosis: &'static str,
    pub self_report: &'static str,
    pub valid_for: &'static str,
    pub hours: &'static str,
    pub symptom_onset_date: &'static str,
    pub test_date: &'static str,
    pub onset_hint: &'static str,
    pub issue_button: &'static str,
    pub code_heading: &'static str,
    pub code_hint: &'static str,
    pub expires: &'static str,
    pub back: &'static str,
    pub forbidden_heading: &'static str,
    pub cannot_issue: &'static str,
    pub nothing_to_do: &'static str,
    pub form_refused: &'static str,
    pub issue_failed: &'static str,
    pub quota_reached: &'static str,
    pub authority_quota_reached: &'static str,
    pub quota_user: &'static str,
    pub quota_authority: &'static str,
    pub quota_resets: &'static str,
    pub not_found: &'static str,
    pub nav_issue: &'static str,
    pub nav_codes: &'static str,
    pub cannot_see: &'static str,
    pub codes_heading: &'static str,
    pub codes_total: &'static str,
    pub issued_at: &'static str,
    pub issued_by: &'static str,
    pub status: &'static str,
    pub status_unused: &'static str,
    pub status_used: &'static str,
    pub status_expired: &'static str,
    pub by_token: &'static str,
    pub page: &'static str,
    pub newer: &'static str,
    pub older: &'static str,
    pub internal_error: &'static str,
}

/// Vietnamese.
pub static VI: Text = Text {
    title: "Bảng điều khiển nhân viên y tế",
    switch_to: "English",
    sign_in_heading: "Đăng nhập",
    email: "Địa chỉ email",
    password: "Mật khẩu",
    password_again: "Nhập lại mật khẩu",
    totp_code: "Mã từ ứng dụng xác thực",
    sign_in: "Đăng nhập",
    login_failed: "Email, mật khẩu hoặc mã không đúng, hoặc tài khoản đang bị khóa tạm thời.",
    too_many_attempts: "Có quá nhiều lần đăng nhập từ mạng của bạn. Vui lòng thử lại sau.",
    enrol_heading: "Thiết lập tài khoản",
    enrol_intro: "Chọn mật khẩu dài ít nhất 12 ký tự. Sau đó thêm khóa dưới đây vào ứng dụng xác thực (quét mã QR hoặc nhập khóa) và nhập mã mà ứng dụng hiển thị.",
    totp_key: "Khóa",
    enrol_button: "Hoàn tất thiết lập",
    enrol_link_invalid: "Liên kết thiết lập này không hợp lệ: đã được dùng, đã hết hạn hoặc bị nhập sai. Hãy xin quản trị viên một liên kết mới.",
    password_too_short: "Mật khẩu phải có ít nhất 12 ký tự.",
    password_common: "Mật khẩu này quá phổ biến; hãy chọn mật khẩu khác.",
    password_mismatch: "Hai mật khẩu không khớp nhau.",
    totp_wrong: "Mã không đúng; hãy kiểm tra đồng hồ của điện thoại và nhập mã hiện tại.",
    enrolled: "Tài khoản đã sẵn sàng. Vui lòng đăng nhập.",
    signed_in_as: "Đang đăng nhập với",
    roles: "Vai trò",
    sign_out: "Đăng xuất",
    issue_heading: "Cấp mã tải lên",
    region: "Khu vực",
    report_type: "Loại báo cáo",
    confirmed_test: "Xác nhận bằng xét nghiệm",
    clinical_diagnosis: "Chẩn đoán lâm sàng",
    self_report: "Tự khai báo",
    valid_for: "Hiệu lực",
    hours: "giờ",
    symptom_onset_date: "Ngày khởi phát triệu chứng (không bắt buộc)",
    test_date: "Ngày xét nghiệm (không bắt buộc, khi không có triệu chứng)",
    onset_hint: "Ngày theo giờ UTC, không sau hôm nay và không quá 30 ngày trước. Máy chủ dùng ngày này để tính số ngày từ khi khởi phát cho các khóa mà bệnh nhân tải lên.",
    issue_button: "Cấp mã",
    code_heading: "Mã tải lên",
    code_hint: "Đưa mã này cho bệnh nhân. Mã chỉ hiển thị một lần.",
    expires: "Hết hạn (UTC)",
    back: "Quay lại",
    forbidden_heading: "Không được phép",
    cannot_issue: "Tài khoản của bạn không có quyền cấp mã.",
    nothing_to_do: "Tài khoản của bạn chưa có việc gì trên trang này.",
    form_refused: "Biểu mẫu đã hết hạn hoặc không đến từ bảng điều khiển. Hãy quay lại, tải lại trang và thử lại.",
    issue_failed: "Không thể cấp mã:",
    quota_reached: "Bạn đã dùng hết hạn mức mã trong ngày; hạn mức được đặt lại lúc",
    authority_quota_reached: "Cơ quan của bạn đã dùng hết hạn mức mã trong ngày; hạn mức được đặt lại lúc",
    quota_user: "Mã bạn đã cấp hôm nay",
    quota_authority: "Mã cơ quan đã cấp hôm nay",
    quota_resets: "Hạn mức được đặt lại lúc",
    not_found: "Không có trang này.",
    nav_issue: "Cấp mã",
    nav_codes: "Danh sách mã",
    cannot_see: "Tài khoản của bạn không được xem trang này.",
    codes_heading: "Các mã đã cấp",
    codes_total: "Tổng số",
    issued_at: "Cấp lúc (UTC)",
    issued_by: "Người cấp",
    status: "Trạng thái",
    status_unused: "Chưa dùng",
    status_used: "Đã dùng",
    status_expired: "Hết hạn",
    by_token: "Mã truy cập API của cơ quan",
    page: "Trang",
    newer: "Mới hơn",
    older: "Cũ hơn",
    internal_error: "Máy chủ gặp sự cố. Vui lòng thử lại.",
};

/// English.
pub static EN: Text = Text {
    title: "Health staff console",
    switch_to: "Tiếng Việt",
    sign_in_heading: "Sign in",
    email: "E-mail address",
    password: "Password",
    password_again: "Password again",
    totp_code: "Code from your authenticator app",
    sign_in: "Sign in",
    login_failed: "The e-mail address, password or code is not right, or the account is locked for a while.",
    too_many_attempts: "Too many sign-in attempts from your network. Try again later.",
    enrol_heading: "Set up your account",
    enrol_intro: "Choose a password of at least 12 characters. Then add the key below to an authenticator app (scan the QR code or type the key) and enter the code it shows.",
    totp_key: "Key",
    enrol_button: "Finish set-up",
    enrol_link_invalid: "This set-up link is not valid: it was used already, it has expired, or it is mistyped. Ask your administrator for a new one.",
    password_too_short: "The password must have at least 12 characters.",
    password_common: "This password is too common; choose another.",
    password_mismatch: "The two passwords differ.",
    totp_wrong: "The code is not right; check your phone's clock and enter the current code.",
    enrolled: "Your account is ready. Sign in.",
    signed_in_as: "Signed in as",
    roles: "Roles",
    sign_out: "Sign out",
    issue_heading: "Issue an upload code",
    region: "Region",
    report_type: "Report type",
    confirmed_test: "Confirmed by a test",
    clinical_diagnosis: "Clinical diagnosis",
    self_report: "Self-report",
    valid_for: "Valid for",
    hours: "hours",
    symptom_onset_date: "Symptom onset date (optional)",
    test_date: "Test date (optional, when there are no symptoms)",
    onset_hint: "A UTC date, not after today and at most 30 days ago. The server uses it to fill in the days since onset of the keys the patient uploads.",
    issue_button: "Issue code",
    code_heading: "Upload code",
    code_hint: "Give this code to the patient. It is shown only once.",
    expires: "Expires (UTC)",
    back: "Back",
    forbidden_heading: "Not allowed",
    cannot_issue: "Your account may not issue codes.",
    nothing_to_do: "Your account has nothing to do on this page yet.",
    form_refused: "This form has expired or did not come from the console. Go back, reload the page and try again.",
    issue_failed: "The code could not be issued:",
    quota_reached: "Your daily quota of codes is used up; it resets at",
    authority_quota_reached: "Your authority's daily quota of codes is used up; it resets at",
    quota_user: "Codes you issued today",
    quota_authority: "Codes your authority issued today",
    quota_resets: "The quotas reset at",
    not_found: "No such page.",
    nav_issue: "Issue",
    nav_codes: "Codes",
    cannot_see: "Your account may not see this page.",
    codes_heading: "Issued codes",
    codes_total: "In all",
    issued_at: "Issued (UTC)",
    issued_by: "Issued by",
    status: "Status",
    status_unused: "Unused",
    status_used: "Used",
    status_expired: "Expired",
    by_token: "The authority's API token",
    page: "Page",
    newer: "Newer",
    older: "Older",
    internal_error: "Something went wrong on the server. Try again.",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_LANGUAGE,
            value.parse().expect("header"),
        );
        headers
    }

    #[test]
    fn accept_language_picks_the_most_wanted_spoken_language() {
        let choose = |value: &str| Lang::choose(None, None, &accept(value));
        assert_eq!(choose("vi"), Lang::Vi);
        assert_eq!(choose("vi-VN,vi;q=0.9,en;q=0.8"), Lang::Vi);
        assert_eq!(choose("fr-FR,en;q=0.5,vi;q=0.4"), Lang::En);
        assert_eq!(choose("en;q=0.3,vi;q=0.9"), Lang::Vi);
        assert_eq!(choose("fr"), Lang::En);
        assert_eq!(choose("vi;q=0"), Lang::En);
        assert_eq!(Lang::choose(None, None, &HeaderMap::new()), Lang::En);
    }

    #[test]
    fn the_switch_wins_over_the_cookie_and_the_cookie_over_the_header() {
        let headers = accept("vi");
        assert_eq!(Lang::choose(Some("en"), Some("vi"), &headers), Lang::En);
        assert_eq!(Lang::choose(None, Some("en"), &headers), Lang::En);
        assert_eq!(Lang::choose(Some("xx"), None, &headers), Lang::Vi);
    }
}
