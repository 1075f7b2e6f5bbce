//! The roles a column can play (company name, website, address parts) and the header names,
//! in several languages, that each role is recognised by.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    CompanyName,
    Website,
    Country,
    State,
    City,
    Street,
    PostalCode,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::CompanyName, Role::Website, Role::Country, Role::State, Role::City, Role::Street, Role::PostalCode];

    pub fn name(self) -> &'static str {
        match self {
            Role::CompanyName => "company_name",
            Role::Website => "website",
            Role::Country => "country",
            Role::State => "state",
            Role::City => "city",
            Role::Street => "street",
            Role::PostalCode => "postal_code",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Header names recognised by auto-detection, compared after `squash` (lower case, letters
    /// and digits only), best first.
    pub(super) fn synonyms(self) -> &'static [&'static str] {
        match self {
            Role::CompanyName => &[
                "companyname",
                "company",
                "accountname",
                "account",
                "organizationname",
                "organisationname",
                "organization",
                "organisation",
                "businessname",
                "companylegalname",
                "legalname",
                "employer",
                // European spreadsheet headers.
                "société",
                "societe",
                "entreprise",
                "raisonsociale",
                "firma",
                "firmenname",
                "unternehmen",
                "empresa",
                "azienda",
                "bedrijf",
                "bedrijfsnaam",
            ],
            Role::Website => &[
                "website",
                "companywebsite",
                "websiteurl",
                "domain",
                "companydomain",
                "domainname",
                "url",
                "web",
                "homepage",
                "site",
                "siteweb",
                "webseite",
                "sitioweb",
            ],
            Role::Country => &[
                "country",
                "countrycode",
                "countryregion",
                "billingcountry",
                "countryname",
                "pays",
                "land",
                "país",
                "pais",
            ],
            Role::State => {
                &["state", "stateprovince", "stateorprovince", "province", "region", "billingstate", "bundesland"]
            }
            Role::City => {
                &["city", "town", "locality", "billingcity", "ville", "stadt", "ort", "ciudad", "città", "citta"]
            }
            Role::Street => &[
                "street",
                "streetaddress",
                "address",
                "address1",
                "addressline1",
                "billingstreet",
                "street1",
                "adresse",
                "rue",
                "straße",
                "strasse",
                "dirección",
                "direccion",
                "indirizzo",
            ],
            Role::PostalCode => &[
                "postalcode",
                "zip",
                "zipcode",
                "postcode",
                "zippostalcode",
                "billingpostalcode",
                "billingzip",
                "codepostal",
                "plz",
                "postleitzahl",
                "códigopostal",
                "codigopostal",
            ],
        }
    }
}

/// Lower case, letters and digits only: `Company Name`, `company_name` and `COMPANY-NAME` agree.
pub(super) fn squash(header: &str) -> String {
    header.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}
