//! The OpenAPI document of the admin API, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::admin::{
    Page, access, audit, clients, groups, keys, organizations, policies, privacy, registration,
    roles, sign_in, user_bulk, user_history, users,
};
use crate::{authentication, self_service};

#[derive(OpenApi)]
#[openapi(
    info(title = "idp admin API", description = "Organizations, users, groups and roles, OAuth clients and their secrets, registration tokens, the audit trail, data subject requests, \
        sign-in policies and sessions, access policies in Rego and the decision point (`/authz`, a token with `idp:authz`); the sign-in flow (`/authentication`) and what a signed-in person does for themselves (`/self`). \
        Every `/admin` endpoint needs a bearer access token with the `idp:admin` scope and, for a client given roles, one granting the permission the endpoint needs (`users:read`, `clients:write`, … : the resource its path names, `read` for GET, `write` otherwise); `/authentication` needs the sign-in's cookie \
        after its start, `/self` a session cookie. Errors are RFC 9457 problem documents (application/problem+json)."),
    paths(
        organizations::create, organizations::list, organizations::show, organizations::rename, organizations::show_branding, organizations::set_branding,
        clients::create, clients::list, clients::show, clients::update, clients::remove,
        clients::enable, clients::disable, clients::create_secret, clients::list_secrets,
        clients::delete_secret, keys::list, keys::rotate, keys::revoke,
        registration::create, registration::list, registration::show, registration::revoke,
        registration::instances, registration::delete_auth_token, crate::registration::consume,
        audit::list, audit::export, audit::event,
        privacy::find, privacy::export, privacy::correct, privacy::erase,
        users::create, users::list, user_history::show, users::update, users::remove,
        users::deactivate, users::reactivate, users::set_password, users::clear_password, users::require_password_change,
        users::groups, user_history::history, user_bulk::bulk,
        groups::create, groups::list, groups::show, groups::update, groups::remove,
        groups::members, groups::add_member, groups::remove_member,
        roles::create, roles::templates, roles::list, roles::show, roles::update, roles::remove, roles::holders,
        roles::assign, roles::unassign, roles::include, roles::exclude, roles::user_roles, roles::client_roles,
        access::user_access, access::permission_holders,
        policies::upload, policies::list, policies::show, policies::activate, policies::rollback,
        policies::settings, crate::authz::decide, crate::authz::decide_batch,
        sign_in::show_policy, sign_in::set_policy, sign_in::user_sessions, sign_in::revoke_session,
        sign_in::revoke_user_sessions, sign_in::unlock, sign_in::remove_totp,
        sign_in::user_notifications, sign_in::outbox,
        sign_in::show_client_policy, sign_in::set_client_policy, sign_in::clear_client_policy,
        authentication::start, authentication::status, authentication::authenticate, authentication::complete, authentication::verify_otp,
        self_service::me, self_service::list_sessions, self_service::revoke_session,
        self_service::revoke_others, self_service::sign_out,
        self_service::methods::list, self_service::methods::step_up, self_service::methods::set_password,
        self_service::methods::begin_totp, self_service::methods::confirm_totp, self_service::methods::remove_totp,
        self_service::methods::begin_passkey, self_service::methods::confirm_passkey,
        self_service::methods::rename_passkey, self_service::methods::remove_passkey,
        self_service::addresses::change_email, self_service::addresses::verify_email,
        self_service::addresses::remove_email, self_service::addresses::change_phone,
        self_service::addresses::verify_phone, self_service::addresses::remove_phone,
        self_service::consents::list_consents, self_service::consents::revoke_consent,
    ),
    components(schemas(
        organizations::CreateOrganization, organizations::RenameOrganization, organizations::BrandingBody, organizations::Organization,
        clients::CreateClient, clients::UpdateClient, clients::ClientView, clients::CreateSecret,
        clients::CreatedSecretView, clients::SecretView,
        registration::CreateRegistrationToken, registration::CreatedRegistrationToken,
        registration::RegistrationTokenView, registration::AuthTokenView,
        crate::registration::Consume, crate::registration::Consumed,
        Page<registration::RegistrationTokenView>, Page<registration::AuthTokenView>,
        keys::KeyView, keys::KeyList, keys::RotateKey, keys::Rotated,
        Page<organizations::Organization>, Page<clients::ClientView>, Page<clients::SecretView>,
        audit::AuditEntryView, audit::AuditLinks, audit::StoredEventView, Page<audit::AuditEntryView>,
        privacy::FoundSubject, privacy::Correction, privacy::Corrected,
        ::privacy::SubjectExport, ::privacy::SubjectData, ::privacy::InstanceRecord,
        ::privacy::ExportedEvent, ::privacy::ErasureRecord, ::privacy::Erasure,
        ::privacy::people::UserRecord, ::privacy::people::CredentialRecord,
        users::CreateUser, users::UpdateUser, users::UserView, users::UserPage, users::ProfileBody,
        users::ProfilePatchBody, users::AddressBody, users::AttributeBody, users::SetPassword, users::RequireChange,
        users::UserGroupView, user_history::ChangeView,
        user_bulk::BulkRequest, user_bulk::BulkResult, user_bulk::BulkResponse,
        groups::CreateGroup, groups::UpdateGroup, groups::AddMember, groups::GroupView,
        groups::MemberView, Page<groups::GroupView>, Page<groups::MemberView>,
        roles::CreateRole, roles::TemplateView, roles::UpdateRole, roles::RoleView, roles::HolderView, roles::ViaView,
        roles::EffectiveRoleView, roles::AccessView, access::RoleThenView, access::AccessThenView,
        access::HolderThenView, access::HoldersThenView, Page<roles::RoleView>, Page<roles::HolderView>,
        policies::UploadPolicy, policies::PolicySettings, policies::PolicyVersionView, policies::PoliciesView,
        crate::authz::Evaluation, crate::authz::Evaluations, crate::authz::PartialEvaluation,
        crate::authz::AuthzSubject, crate::authz::AuthzResource, crate::authz::AuthzAction,
        crate::authz::DecisionView, crate::authz::DecisionsView,
        sign_in::PolicyBody, sign_in::ClientPolicyView, sign_in::NotificationView, Page<sign_in::NotificationView>, crate::notify::OutboxEntry,
        authentication::StartBody, authentication::StepView, authentication::SignInView,
        authentication::AuthenticateBody, authentication::CompleteBody, authentication::CompletedView,
        authentication::CodeView, authentication::VerifyOtpBody,
        self_service::MeView, self_service::SessionView, self_service::SessionList, self_service::Revoked,
        self_service::methods::MethodsView, self_service::methods::PasswordMethod, self_service::methods::TotpMethod,
        self_service::methods::AddressMethod, self_service::methods::StepUpBody, self_service::methods::SteppedUp, self_service::methods::PasskeyStepUp,
        self_service::methods::NewPassword, self_service::methods::TotpEnrolment, self_service::methods::ConfirmTotp,
        self_service::methods::PasskeyView, self_service::methods::PasskeyRegistration,
        self_service::methods::ConfirmPasskey, self_service::methods::RenamePasskey,
        authentication::PasskeyRequest,
        self_service::addresses::NewEmail, self_service::addresses::NewPhone,
        self_service::consents::ConsentView, self_service::consents::ConsentList,
        self_service::addresses::Verification, self_service::addresses::VerifyAddress,
    )),
    modifiers(&BearerAuth),
)]
pub struct AdminApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(AdminApi::openapi()).unwrap_or_default();
    unique_operation_ids(&mut doc);
    doc
}

/// Operation ids default to the handlers' names, which repeat across
/// resources (`list`, `show`): each becomes `{tag}_{name}`, unique as the
/// specification requires.
fn unique_operation_ids(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let tag = op
                .get("tags")
                .and_then(|t| t.get(0))
                .and_then(|t| t.as_str())
                .map(str::to_owned);
            if let (Some(tag), Some(id)) = (
                tag,
                op.get("operationId")
                    .and_then(|i| i.as_str())
                    .map(str::to_owned),
            ) && let Some(o) = op.as_object_mut()
            {
                o.insert(
                    "operationId".into(),
                    serde_json::Value::String(format!("{tag}_{id}")),
                );
            }
        }
    }
}
