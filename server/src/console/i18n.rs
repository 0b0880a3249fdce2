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
    pub busy_heading: &'static str,
    pub busy: &'static str,
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
    pub bulk_heading: &'static str,
    pub bulk_hint: &'static str,
    pub bulk_count: &'static str,
    pub bulk_button: &'static str,
    pub quota_authority: &'static str,
    pub quota_resets: &'static str,
    pub not_found: &'static str,
    pub nav_issue: &'static str,
    pub nav_codes: &'static str,
    pub nav_audit: &'static str,
    pub nav_users: &'static str,
    pub nav_stats: &'static str,
    pub stats_heading: &'static str,
    pub stats_hint: &'static str,
    pub chart_label: &'static str,
    pub day: &'static str,
    pub codes_issued: &'static str,
    pub codes_used: &'static str,
    pub median_to_upload: &'static str,
    pub codes_expired: &'static str,
    pub uploads_token: &'static str,
    pub uploads_code: &'static str,
    pub keys: &'static str,
    pub keys_published: &'static str,
    pub users_heading: &'static str,
    pub changes: &'static str,
    pub role_admin: &'static str,
    pub role_issuer: &'static str,
    pub role_viewer: &'static str,
    pub user_disabled: &'static str,
    pub user_invited: &'static str,
    pub user_locked: &'static str,
    pub user_active: &'static str,
    pub change_roles: &'static str,
    pub enable_user: &'static str,
    pub disable_user: &'static str,
    pub reset_second_factor: &'static str,
    pub invite_heading: &'static str,
    pub invite_button: &'static str,
    pub enrolment_link_hint: &'static str,
    pub last_admin: &'static str,
    pub address_taken: &'static str,
    pub bad_address: &'static str,
    pub no_roles: &'static str,
    pub no_such_user: &'static str,
    pub audit_heading: &'static str,
    pub download_csv: &'static str,
    pub time: &'static str,
    pub user: &'static str,
    pub action: &'static str,
    pub object: &'static str,
    pub result: &'static str,
    pub network: &'static str,
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
    busy_heading: "Hệ thống đang bận",
    busy: "Hệ thống đang bận. Vui lòng thử lại sau vài giây.",
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
    bulk_heading: "Cấp nhiều mã",
    bulk_hint: "Tải về một tệp CSV, mỗi dòng một mã và thời hạn của mã (tối đa 1.000 mã). Giữ tệp an toàn: mỗi mã chỉ hiển thị một lần.",
    bulk_count: "Số mã",
    bulk_button: "Cấp và tải về CSV",
    quota_authority: "Mã cơ quan đã cấp hôm nay",
    quota_resets: "Hạn mức được đặt lại lúc",
    not_found: "Không có trang này.",
    nav_issue: "Cấp mã",
    nav_codes: "Danh sách mã",
    nav_audit: "Nhật ký",
    nav_users: "Người dùng",
    nav_stats: "Thống kê",
    stats_heading: "Thống kê theo ngày (UTC)",
    stats_hint: "Số nhỏ hơn ngưỡng được hiển thị là \"< N\" để không lộ số ca ít. Ngưỡng:",
    chart_label: "Biểu đồ mã đã cấp và đã dùng theo ngày",
    day: "Ngày",
    codes_issued: "Mã đã cấp",
    codes_used: "Mã đã dùng",
    median_to_upload: "Trung vị phút từ cấp mã đến tải lên",
    codes_expired: "Mã hết hạn chưa dùng",
    uploads_token: "Lượt tải lên bằng mã truy cập API",
    uploads_code: "Lượt tải lên bằng mã",
    keys: "Khóa đã lưu",
    keys_published: "Khóa đã công bố",
    users_heading: "Người dùng của cơ quan",
    changes: "Thay đổi",
    role_admin: "quản trị",
    role_issuer: "cấp mã",
    role_viewer: "xem thống kê",
    user_disabled: "Đã vô hiệu hóa",
    user_invited: "Đã mời, chưa thiết lập",
    user_locked: "Đang bị khóa tạm thời",
    user_active: "Đang hoạt động",
    change_roles: "Đổi vai trò",
    enable_user: "Kích hoạt lại",
    disable_user: "Vô hiệu hóa",
    reset_second_factor: "Đặt lại xác thực hai bước",
    invite_heading: "Mời người dùng",
    invite_button: "Tạo liên kết mời",
    enrolment_link_hint: "Gửi liên kết thiết lập này cho người đó (có hiệu lực 24 giờ, dùng một lần). Liên kết chỉ hiển thị lần này.",
    last_admin: "Cơ quan phải luôn có ít nhất một quản trị viên đang hoạt động; thay đổi này không được thực hiện.",
    address_taken: "Địa chỉ email này đã có tài khoản.",
    bad_address: "Địa chỉ email không hợp lệ.",
    no_roles: "Hãy chọn ít nhất một vai trò.",
    no_such_user: "Không có người dùng này.",
    audit_heading: "Nhật ký kiểm tra",
    download_csv: "Tải về CSV",
    time: "Thời điểm (UTC)",
    user: "Người dùng",
    action: "Hành động",
    object: "Đối tượng",
    result: "Kết quả",
    network: "Mạng của máy khách",
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
    busy_heading: "Busy",
    busy: "The console is busy. Try again in a few seconds.",
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
    bulk_heading: "Issue many codes",
    bulk_hint: "Downloads a CSV file, one code and its expiry a line (at most 1,000 codes). Keep the file safe: each code is shown only this once.",
    bulk_count: "Number of codes",
    bulk_button: "Issue and download CSV",
    quota_authority: "Codes your authority issued today",
    quota_resets: "The quotas reset at",
    not_found: "No such page.",
    nav_issue: "Issue",
    nav_codes: "Codes",
    nav_audit: "Audit log",
    nav_users: "Users",
    nav_stats: "Statistics",
    stats_heading: "Statistics per day (UTC)",
    stats_hint: "A count below the threshold is shown as \"< N\", so that small numbers of cases are not told. Threshold:",
    chart_label: "Chart of codes issued and used per day",
    day: "Day",
    codes_issued: "Codes issued",
    codes_used: "Codes used",
    median_to_upload: "Median minutes from code to upload",
    codes_expired: "Codes expired unused",
    uploads_token: "Uploads with the API token",
    uploads_code: "Uploads with a code",
    keys: "Keys stored",
    keys_published: "Keys published",
    users_heading: "Users of your authority",
    changes: "Changes",
    role_admin: "admin",
    role_issuer: "issuer",
    role_viewer: "viewer",
    user_disabled: "Disabled",
    user_invited: "Invited, not set up yet",
    user_locked: "Locked for a while",
    user_active: "Active",
    change_roles: "Change roles",
    enable_user: "Enable",
    disable_user: "Disable",
    reset_second_factor: "Reset second factor",
    invite_heading: "Invite a user",
    invite_button: "Create invitation link",
    enrolment_link_hint: "Send this set-up link to the person (valid 24 hours, works once). It is shown only this once.",
    last_admin: "An authority always keeps at least one enabled admin; the change was not made.",
    address_taken: "This e-mail address already has an account.",
    bad_address: "This is not an e-mail address.",
    no_roles: "Choose at least one role.",
    no_such_user: "No such user.",
    audit_heading: "Audit log",
    download_csv: "Download CSV",
    time: "Time (UTC)",
    user: "User",
    action: "Action",
    object: "Object",
    result: "Result",
    network: "Client network",
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
